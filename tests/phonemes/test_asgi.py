"""The ASGI application closes the shared phoneme sessions when the server shuts down."""

import asyncio

from robotperf.asgi import application
from tests.asgi import http_request


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
    status, _, _ = asyncio.run(http_request("/admin/login/"))
    assert status == 200
