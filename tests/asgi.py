"""One HTTP request straight to the project's ASGI application, as a server would make it."""

import asyncio

from robotperf.asgi import application


async def http_request(path, *, method="GET", query="", headers=(), body=b""):
    """(status, headers, body) of one request to ``robotperf.asgi.application``."""
    sent, inbox = [], [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if inbox:
            return inbox.pop()
        await asyncio.Event().wait()  # the client stays connected

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "root_path": "",
    }
    await application(scope, receive, send)
    start, *chunks = sent
    response_headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    return start["status"], response_headers, b"".join(c.get("body", b"") for c in chunks)
