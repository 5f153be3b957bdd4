"""The session JSON API through the ASGI application: the async view, the async store, the
tests' Redis; and the lifespan shutdown closing the async store's client."""

import asyncio
import re

import orjson
import pytest

from robotperf.asgi import application
from sessions_app import services
from sessions_app.store import AsyncConversationStore, get_async_store, get_store
from tests.asgi import http_request
from tests.sessions_app.factories import save_session

PHASES = ("redis", "decode", "assemble")


TOKEN = "robot-token"


@pytest.fixture(autouse=True)
def api_token(settings):
    settings.ROBOTPERF_API = {"TOKEN": TOKEN}


async def request(path, *, query="", method="GET", token=TOKEN, scheme="Bearer ", body=b""):
    """(status, headers, body) of one request to the ASGI application, with the token."""
    auth = [(b"authorization", f"{scheme}{token}".encode())] if token else []
    return await http_request(path, method=method, query=query, headers=auth, body=body)


def raw(path, **kwargs):
    """One request on a fresh event loop, whose store client is closed before the loop is."""

    async def main():
        try:
            return await request(path, **kwargs)
        finally:
            await get_async_store().aclose()

    return asyncio.run(main())


def get(path, **kwargs):
    status, headers, body = raw(path, **kwargs)
    return status, headers, orjson.loads(body)


def timings(header):
    """{name: milliseconds} of a Server-Timing header."""
    return {name: float(dur) for name, dur in re.findall(r"([\w-]+);dur=([\d.]+)", header)}


class TestLoad:
    def test_answers_the_session_as_the_store_loads_it(self):
        save_session(get_store(), "c1", turns=30)
        status, headers, body = get("/api/sessions/c1", query="window=5")
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert body == get_store().load("c1", window=5)
        assert [turn["seq"] for turn in body["history"]] == [25, 26, 27, 28, 29]
        assert (body["_rev"], body["_turns"]) == (1, 30)
        assert body["bot_config"]["system_prompt"] == "Be kind."

    @pytest.mark.parametrize(
        ("query", "turns"), [("", 20), ("window=0", 0), ("window=100", 30), ("window=all", 30)]
    )
    def test_window(self, query, turns):
        save_session(get_store(), "c1", turns=30)
        status, _, body = get("/api/sessions/c1", query=query)
        assert status == 200
        assert [turn["seq"] for turn in body["history"]] == list(range(30 - turns, 30))

    @pytest.mark.django_db(transaction=True)
    def test_every_turn_includes_the_archived_ones(self):
        save_session(get_store(), "c1", turns=30)
        services.trim_history("c1", keep=10)
        status, _, body = get("/api/sessions/c1", query="window=all")
        assert status == 200
        assert [turn["seq"] for turn in body["history"]] == list(range(30))
        assert body["history"][0]["content"] == "turn 0"

    def test_server_timing_gives_the_loads_phases(self):
        save_session(get_store(), "c1", turns=30)
        _, headers, _ = get("/api/sessions/c1")
        timing = timings(headers["server-timing"])
        assert list(timing) == [*PHASES, "store", "app"]
        # The phases tile the load; the view's time includes it.
        assert sum(timing[phase] for phase in PHASES) == pytest.approx(timing["store"], abs=0.005)
        assert timing["app"] >= timing["store"] > 0


class TestErrors:
    def test_a_missing_session_is_a_404(self):
        status, headers, body = get("/api/sessions/nobody")
        assert status == 404
        assert "nobody" in body["error"]
        assert "app" in timings(headers["server-timing"])

    @pytest.mark.parametrize("window", ["-1", "1.5", "abc", "", "٣"])
    def test_a_bad_window_is_a_400(self, window):
        save_session(get_store(), "c1", turns=3)
        status, _, body = get("/api/sessions/c1", query=f"window={window}")
        assert status == 400
        assert "window" in body["error"]

    def test_a_bad_conversation_id_is_a_400(self):
        status, _, body = get("/api/sessions/a{b}")
        assert status == 400
        assert "braces" in body["error"]

    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
    def test_only_get(self, method):
        status, headers, body = get("/api/sessions/c1", method=method)
        assert status == 405
        assert headers["allow"] == "GET, HEAD"
        assert "GET" in body["error"]

    @pytest.mark.parametrize(
        "path", ["/api/sessions/a/b", "/api/sessions/", "/api/", "/api/sessions/a/..", "/api/x"]
    )
    def test_a_path_that_names_no_session_is_a_json_404(self, path):
        # a%2Fb reaches the application decoded, as two segments; a client resolves "..".
        status, headers, body = get(path)
        assert status == 404
        assert headers["content-type"] == "application/json"
        assert body == {"error": f"no API at {path!r}"}

    @pytest.mark.parametrize("path", ["/api/sessions/a%2Fb", "/api/sessions/..", "/api/"])
    def test_through_a_wsgi_server_too(self, client, path):
        response = client.get(path, headers={"authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert "error" in response.json()

    def test_redis_down_is_a_503_naming_nothing_of_it(self, monkeypatch, settings):
        down = AsyncConversationStore.from_url("redis://:hunter2@127.0.0.1:1/0")
        monkeypatch.setattr("sessions_app.api.get_async_store", lambda: down)
        status, headers, body = get("/api/sessions/c1")
        assert status == 503
        assert headers["content-type"] == "application/json"
        assert headers["retry-after"] == "1"
        assert "hunter2" not in body["error"]
        assert "127.0.0.1" not in body["error"]

    def test_a_corrupt_session_is_a_500_naming_no_key(self, redis_client):
        store = get_store()
        save_session(store, "c1", turns=3)
        redis_client.hset(store.keys.state("c1"), "s:record", b"\xff not json")
        status, _, body = get("/api/sessions/c1")
        assert status == 500
        assert body == {"error": "the stored session cannot be decoded"}
        assert redis_client.hget(store.keys.state("c1"), "s:record") == b"\xff not json"


async def run_lifespan(*messages):
    sent, inbox = [], iter(messages)

    async def receive():
        return {"type": next(inbox)}

    async def send(message):
        sent.append(message["type"])

    await application({"type": "lifespan"}, receive, send)
    return sent


def test_lifespan_shutdown_closes_the_loops_store_client():
    save_session(get_store(), "c1", turns=3)
    store = get_async_store()

    async def main():
        status, _, _ = await request("/api/sessions/c1")
        loop = asyncio.get_running_loop()
        pool = store._clients[loop].connection_pool
        used = [c for c in pool._available_connections if c.is_connected]
        sent = await run_lifespan("lifespan.startup", "lifespan.shutdown")
        return status, sent, used, loop in store._clients

    status, sent, used, still_kept = asyncio.run(main())
    assert status == 200
    assert used, "the request left a pooled connection open"
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert not still_kept
    assert not any(connection.is_connected for connection in used)


class TestHead:
    def test_head_answers_as_get_without_the_body(self):
        save_session(get_store(), "c1", turns=30)
        _, got, body = raw("/api/sessions/c1", query="window=5")
        status, headers, empty = raw("/api/sessions/c1", query="window=5", method="HEAD")
        assert status == 200
        assert empty == b""
        assert headers["content-type"] == got["content-type"] == "application/json"
        assert int(headers["content-length"]) == len(body)
        assert "store" in timings(headers["server-timing"])

    @pytest.mark.parametrize(("token", "status"), [(TOKEN, 404), ("wrong", 401)])
    def test_head_of_an_error_is_the_errors_status(self, token, status):
        got, headers, empty = raw("/api/sessions/nobody", method="HEAD", token=token)
        assert (got, empty) == (status, b"")
        assert headers["content-type"] == "application/json"


class TestToken:
    @pytest.mark.parametrize(
        ("token", "scheme"),
        [
            (None, ""),
            ("wrong", "Bearer "),
            (TOKEN + "x", "Bearer "),
            (TOKEN, ""),
            (TOKEN, "Basic "),
        ],
        ids=["none", "wrong", "longer", "bare", "other-scheme"],
    )
    def test_no_or_a_wrong_token_is_refused(self, store, token, scheme):
        save_session(store, "c1", turns=3)
        status, headers, body = get("/api/sessions/c1", token=token, scheme=scheme)
        assert status == 401
        assert headers["www-authenticate"] == "Bearer"
        assert "API_TOKEN" in body["error"]
        assert "turn" not in orjson.dumps(body).decode()

    def test_the_scheme_is_case_insensitive(self, store):
        save_session(store, "c1", turns=3)
        status, _, body = get("/api/sessions/c1", scheme="bearer ")
        assert status == 200
        assert body["conversation_id"] == "c1"

    def test_without_a_configured_token_the_api_is_off_outside_debug(self, store, settings):
        settings.ROBOTPERF_API = {"TOKEN": ""}
        settings.DEBUG = False
        save_session(store, "c1", turns=3)
        status, _, body = get("/api/sessions/c1", token=None)
        assert (status, body) == (403, {"error": "the session API is off: set API_TOKEN"})

    def test_without_a_configured_token_development_needs_none(self, store, settings):
        settings.ROBOTPERF_API = {"TOKEN": ""}
        settings.DEBUG = True
        save_session(store, "c1", turns=3)
        status, _, body = get("/api/sessions/c1", token=None)
        assert status == 200
        assert body["conversation_id"] == "c1"


def post_turns(cid, body, **kwargs):
    status, headers, answer = raw(
        f"/api/sessions/{cid}/turns", method="POST", body=orjson.dumps(body), **kwargs
    )
    return status, headers, orjson.loads(answer)


class TestAppend:
    def test_appends_the_turns_and_answers_their_seqs(self):
        save_session(get_store(), "c1", turns=3)
        turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]

        status, headers, body = post_turns("c1", {"turns": turns})

        assert (status, body) == (200, {"seqs": [3, 4]})
        assert headers["content-type"] == "application/json"
        assert get_store().load("c1", window=2)["history"] == [
            {**turn, "seq": seq} for turn, seq in zip(turns, [3, 4], strict=True)
        ]

    @pytest.mark.parametrize(
        "body", [{"turns": []}, {"turns": "hi"}, {"turns": [1]}, [], {"turn": [{}]}]
    )
    def test_a_body_that_is_no_list_of_turns_is_a_400(self, body):
        save_session(get_store(), "c1", turns=3)
        status, _, answer = post_turns("c1", body)
        assert status == 400
        assert "non-empty list of JSON objects" in answer["error"]
        assert get_store().load("c1")["_turns"] == 3

    def test_not_json_is_a_400(self):
        status, _, body = raw("/api/sessions/c1/turns", method="POST", body=b"{nope")
        assert status == 400
        assert b"not JSON" in body

    def test_an_unknown_session_is_a_404_and_nothing_is_created(self, redis_client):
        status, _, body = post_turns("nobody", {"turns": [{"role": "user"}]})
        assert (status, body) == (404, {"error": "conversation 'nobody' does not exist"})
        assert redis_client.keys("*nobody*") == []

    def test_only_post_with_the_token(self):
        save_session(get_store(), "c1", turns=3)
        assert raw("/api/sessions/c1/turns")[0] == 405
        assert post_turns("c1", {"turns": [{}]}, token="wrong")[0] == 401
        assert get_store().load("c1")["_turns"] == 3

    def test_redis_down_is_a_503_to_retry_saying_whether_it_may_have_been_written(
        self, monkeypatch
    ):
        down = AsyncConversationStore.from_url("redis://127.0.0.1:1/0")
        monkeypatch.setattr("sessions_app.api.get_async_store", lambda: down)
        status, headers, body = post_turns("c1", {"turns": [{"role": "user"}]})
        assert status == 503
        assert headers["retry-after"] == "1"
        # Nothing could be sent to a server that refuses connections: not written.
        assert body == {
            "error": "the conversation store is unavailable, try again",
            "maybe_written": False,
        }

    def test_through_a_wsgi_server_too(self, client):
        save_session(get_store(), "c1", turns=3)
        response = client.post(
            "/api/sessions/c1/turns",
            {"turns": [{"role": "user"}]},
            content_type="application/json",
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        assert (response.status_code, response.json()) == (200, {"seqs": [3]})
