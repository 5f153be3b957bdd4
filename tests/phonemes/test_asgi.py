"""The ASGI application closes the shared phoneme sessions when the server shuts down."""

import asyncio

from robotperf.asgi import application


async def run_lifespan(messages):
    sent = []
    inbox = iter(messages)

    async def receive():
        return {"type": next(inbox)}

    async def send(message):
        sent.append(message["type"])

    await application({"type": "lifespan"}, receive, send)
    return sent


def test_lifespan_shutdown_closes_the_loops_session(phoneme_client):
    async def main():
        await phoneme_client.aphonemes("cat", "en")
        session = phoneme_client._session()
        sent = await run_lifespan(["lifespan.startup", "lifespan.shutdown"])
        return session, sent

    session, sent = asyncio.run(main())
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert session.closed


def test_http_requests_still_reach_django(db):
    async def main():
        sent, requests = [], [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive():
            if requests:
                return requests.pop()
            await asyncio.Event().wait()  # the client stays connected

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/admin/login/",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1")],
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "root_path": "",
        }
        await application(scope, receive, send)
        return sent

    sent = asyncio.run(main())
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 200
