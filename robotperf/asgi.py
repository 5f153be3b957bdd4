"""ASGI entry point: Django, plus the lifespan protocol so that shared clients (the phoneme
service's sessions, the conversation store's Redis client) close at shutdown.

Django's handler refuses lifespan scopes, which servers such as uvicorn send at start and stop.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "robotperf.settings")
django_application = get_asgi_application()

from phonemes.client import aclose_all  # noqa: E402 - needs the apps loaded above
from sessions_app.store import get_async_store  # noqa: E402


async def application(scope, receive, send):
    if scope["type"] != "lifespan":
        return await django_application(scope, receive, send)
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await aclose_all()
            await get_async_store().aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
