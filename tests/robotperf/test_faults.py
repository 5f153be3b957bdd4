"""Faults under the served stack (gunicorn with a uvicorn worker, DEBUG off, the phoneme
server): Redis, the phoneme server and the database each go away in the middle of API calls.

Every answer is then a 503 with Retry-After (never a 500), /readyz is 503 naming the service,
and everything comes back by itself when the service does: no process is restarted, and no
append that was answered 2xx is lost.
"""

import threading
import time
import urllib.error
import urllib.request
import uuid

import orjson
import psycopg
import pytest

from scripts.served_stack import ServedStack
from sessions_app.store import get_store
from tests.sessions_app.factories import save_session
from tests.tcp_proxy import TcpProxy

POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"


def call(url, *, method="GET", body=None, token=None):
    """(status, headers, JSON body) of one request; an HTTP error status is an answer too."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers, orjson.loads(answer.read())
    except urllib.error.HTTPError as answer:
        return answer.code, answer.headers, orjson.loads(answer.read())


def until(check, *, timeout=20):
    """Call ``check`` until it returns true; its last value."""
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


def assert_unavailable(answer):
    status, headers, body = answer
    assert status == 503, body
    assert headers["Retry-After"] == "1"
    assert "error" in body


def readyz(stack):
    status, _, body = call(f"{stack.url}/readyz")
    return status, {name: check["ok"] for name, check in body["checks"].items()}


@pytest.fixture
def stack(tmp_path, sessions_redis, request):
    """The served stack on a Redis of the test's own that keeps every acknowledged write (AOF,
    fsync at each) and can be killed; the database is SQLite unless the test gives a URL."""
    redis_server = sessions_redis("--appendonly", "yes", "--appendfsync", "always")
    database_url = getattr(request, "param", None)
    with ServedStack(
        tmp_path / "var", redis_url=redis_server.url, database_url=database_url, workers=1
    ) as served:
        served.redis = redis_server
        yield served


class Appender:
    """Threads appending numbered turns to one session through the API, recording each answer."""

    def __init__(self, stack, cid, threads=4):
        self.url = f"{stack.url}/api/sessions/{cid}/turns"
        self.token = stack.api_token
        self.answers = []  # (marker, status, headers, body)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(threads)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def run(self, n):
        count = 0
        while not self.stop.is_set():
            marker = f"t{n}-{count}"
            count += 1
            answer = call(
                self.url, method="POST", body={"turns": [{"content": marker}]}, token=self.token
            )
            self.answers.append((marker, *answer))

    def count(self, status):
        return sum(1 for _, got, _, _ in self.answers if got == status)


def test_redis_killed_mid_run_answers_503_then_recovers_with_every_acknowledged_turn(stack):
    save_session(get_store(), "c1", turns=3)
    load = f"{stack.url}/api/sessions/c1"

    with Appender(stack, "c1") as appender:
        assert until(lambda: appender.count(200) >= 20)
        stack.redis.kill()
        assert until(lambda: appender.count(503) >= 10)
        assert_unavailable(call(load, token=stack.api_token))
        assert similarity(stack, "first")[0] == 200, "the phoneme API needs no Redis"
        assert readyz(stack) == (
            503,
            {"redis": False, "database": True, "broker": False, "phonemes": True},
        )
        stack.redis.start()  # the same port, its append-only file read back
        acked = appender.count(200)
        assert until(lambda: appender.count(200) >= acked + 20), "appends came back by themselves"

    statuses = {status for _, status, _, _ in appender.answers}
    assert statuses == {200, 503}, statuses
    for _, status, headers, body in appender.answers:
        if status == 503:
            assert headers["Retry-After"] == "1"
            assert isinstance(body["maybe_written"], bool)
    assert readyz(stack)[0] == 200
    status, _, session = call(f"{load}?window=all", token=stack.api_token)
    assert status == 200
    stored = {turn["content"]: turn["seq"] for turn in session["history"] if "content" in turn}
    for marker, status, _, body in appender.answers:
        if status == 200:
            assert stored.get(marker) == body["seqs"][0], f"acknowledged turn {marker} lost"
    maybe = [marker for marker, status, _, body in appender.answers if status == 503]
    not_sent = [m for m, s, _, b in appender.answers if s == 503 and not b["maybe_written"]]
    assert not set(not_sent) & set(stored), "a turn reported not written is in the session"
    assert len(maybe) >= 10


def similarity(stack, text):
    body = {"text_1": text, "text_2": "cat", "lang": "en"}
    return call(f"{stack.url}/api/phonemes/similarity", method="POST", body=body)


def test_the_phoneme_server_killed_answers_503_then_recovers(stack):
    assert similarity(stack, "first")[0] == 200

    stack.stop_phonemes()
    assert_unavailable(similarity(stack, f"unseen {uuid.uuid4().hex}"))
    assert similarity(stack, "first")[0] == 200, "a cached pair needs no phoneme server"
    assert readyz(stack) == (
        503,
        {"redis": True, "database": True, "broker": True, "phonemes": False},
    )

    stack.start_phonemes()  # the same port
    assert until(lambda: similarity(stack, f"unseen {uuid.uuid4().hex}")[0] == 200)
    assert readyz(stack)[0] == 200


@pytest.fixture
def postgres_database():
    """A throwaway PostgreSQL database, reached through a proxy the test can stop."""
    try:
        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError:
        pytest.skip(f"no PostgreSQL at {POSTGRES}")
    name = f"test_faults_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE DATABASE {name}")
    proxy = TcpProxy(5432).start()
    try:
        yield proxy, f"postgres://postgres@127.0.0.1:{proxy.port}/{name}"
    finally:
        proxy.stop()
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def stack_on_postgres(tmp_path, sessions_redis, postgres_database):
    proxy, url = postgres_database
    redis_server = sessions_redis()
    with ServedStack(
        tmp_path / "var", redis_url=redis_server.url, database_url=url, workers=1
    ) as served:
        served.proxy = proxy
        yield served


def test_the_database_gone_answers_503_where_it_is_needed_then_recovers(stack_on_postgres):
    stack = stack_on_postgres
    save_session(get_store(), "c1", turns=30)
    stack.manage("compact_sessions", "--max-turns", "10", "--keep-turns", "5")
    assert get_store().client.llen(get_store().keys.turns("c1")) == 5
    every_turn = f"{stack.url}/api/sessions/c1?window=all"
    token = stack.api_token
    status, _, session = call(every_turn, token=token)
    assert (status, len(session["history"])) == (200, 30), "25 of them from the archive"
    assert similarity(stack, "first")[0] == 200

    stack.proxy.stop()
    assert_unavailable(call(every_turn, token=token))
    assert_unavailable(similarity(stack, f"unseen {uuid.uuid4().hex}"))
    # What needs only Redis goes on: the last turns, and appends.
    assert call(f"{stack.url}/api/sessions/c1?window=5", token=token)[0] == 200
    turns = f"{stack.url}/api/sessions/c1/turns"
    assert call(turns, method="POST", body={"turns": [{"content": "x"}]}, token=token)[0] == 200
    assert readyz(stack) == (
        503,
        {"redis": True, "database": False, "broker": True, "phonemes": True},
    )

    stack.proxy.start()  # the same port
    assert until(lambda: call(every_turn, token=token)[0] == 200)
    assert len(call(every_turn, token=token)[2]["history"]) == 31
    assert similarity(stack, f"unseen {uuid.uuid4().hex}")[0] == 200
    assert readyz(stack)[0] == 200
