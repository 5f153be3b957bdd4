"""The conversation store's JSON API for the robot service: each request one store call.

``GET <conversation_id>?window=20`` answers the session as ``load`` returns it (``window=all``:
every turn) with a ``Server-Timing`` header of the load's phases (HEAD: the same status and
headers, no body). ``POST <conversation_id>/turns`` with ``{"turns": [{...}, ...]}`` appends
them and answers ``{"seqs": [...]}``, their sequence numbers. Every error is JSON
``{"error": ...}``: 400 bad input, 401 no or a wrong ``Authorization: Bearer`` token
(``ROBOTPERF_API``), 403 no token is configured outside DEBUG, 404 no such session, 405 another
method, 500 the session cannot be read, 503 with ``Retry-After`` when Redis or the archive
database does not answer. An append's 503 says ``"maybe_written": true`` when the turns were
sent and their answer lost: load the session (turns carry their seq) before sending them again.
"""

import itertools
import logging
import time
from collections import defaultdict

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError
from django.http import HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt

from convstore.tracing import recording_phases
from sessions_app.store import (
    CorruptSession,
    SessionNotFound,
    StoreUnavailable,
    get_async_store,
    get_store,
)

log = logging.getLogger(__name__)
DEFAULT_WINDOW = 20
# Seconds a caller waits before it tries again after a 503: a Redis or database restarting.
RETRY_AFTER = 1


@csrf_exempt  # it only reads; any other method gets the robot a JSON 405, not a CSRF page
async def session(request, conversation_id):
    started = time.perf_counter_ns()
    with recording_phases() as calls:
        response = await load_session(request, conversation_id)
    response["Server-Timing"] = server_timing(calls, time.perf_counter_ns() - started)
    if request.method == "HEAD":
        # What GET would answer, without the body (not every server strips it).
        response["Content-Length"] = len(response.content)
        response.content = b""
    return response


async def load_session(request, conversation_id):
    refused = check_token(request)
    if refused is not None:
        return refused
    if request.method not in ("GET", "HEAD"):
        response = error(405, f"method {request.method} not allowed: GET a session")
        response["Allow"] = "GET, HEAD"
        return response
    try:
        window = parse_window(request.GET.get("window"))
        loaded = await store_call(request, "load", conversation_id, window=window)
        body = None if loaded is None else orjson.dumps(loaded)
    except ValueError as e:
        return error(400, str(e))
    except (StoreUnavailable, DatabaseError) as e:
        return unavailable(e)
    except CorruptSession as e:
        # The message names a Redis key: operators read it in the log, the caller gets less.
        log.error("session API: %s", e)
        return error(500, "the stored session cannot be decoded")
    except Exception:
        # The robot service parses every answer as JSON, a failure included.
        log.exception("session API: loading conversation %r failed", conversation_id)
        return error(500, "internal error")
    if body is None:
        return error(404, f"conversation {conversation_id!r} does not exist")
    return HttpResponse(body, content_type="application/json")


@csrf_exempt  # machine-to-machine: the robot service posts JSON, it holds no CSRF cookie
async def turns(request, conversation_id):
    refused = check_token(request)
    if refused is not None:
        return refused
    if request.method != "POST":
        response = error(405, f"method {request.method} not allowed: POST the turns")
        response["Allow"] = "POST"
        return response
    try:
        seqs = await store_call(request, "append_turns", conversation_id, parse_turns(request.body))
    except ValueError as e:
        return error(400, str(e))
    except SessionNotFound:
        return error(404, f"conversation {conversation_id!r} does not exist")
    except StoreUnavailable as e:
        # A write whose answer was lost may have happened: the robot reloads before a retry.
        return unavailable(e, maybe_written=e.maybe_written)
    except CorruptSession as e:
        log.error("session API: %s", e)
        return error(500, "the stored session cannot be decoded")
    except Exception:
        log.exception("session API: appending to conversation %r failed", conversation_id)
        return error(500, "internal error")
    return JsonResponse({"seqs": seqs})


def parse_turns(raw):
    """The turns of an append's body ``{"turns": [{...}, ...]}``."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"body is not JSON: {e}") from e
    turns = body.get("turns") if isinstance(body, dict) else None
    if not turns or not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise ValueError('body must be {"turns": [...]}: a non-empty list of JSON objects')
    return turns


async def store_call(request, name, *args, **kwargs):
    """The store's call ``name``, on the store that keeps one bounded pool for the process.

    An ASGI server runs every request on its one event loop: the async store's client for that
    loop serves them all. A WSGI server (runserver, gunicorn's gthread workers) runs this view
    through async_to_sync, on a new event loop per request, where the async store would open a
    pool per request that only the garbage collector closes: there the process's sync store
    runs it, in the request's own thread.
    """
    if isinstance(request, ASGIRequest):
        return await getattr(get_async_store(), name)(*args, **kwargs)
    return await sync_to_async(getattr(get_store(), name))(*args, **kwargs)


def check_token(request):
    """None when the caller may read sessions, else the error to answer."""
    token = settings.ROBOTPERF_API["TOKEN"]
    if not token:
        return None if settings.DEBUG else error(403, "the session API is off: set API_TOKEN")
    # The scheme is required (RFC 6750): a bare token is refused like a wrong one.
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not constant_time_compare(sent, token):
        response = error(401, "send Authorization: Bearer <API_TOKEN>")
        response["WWW-Authenticate"] = "Bearer"
        return response
    return None


def parse_window(raw):
    """The ``window`` query parameter: absent is the default, ``all`` every turn."""
    if raw is None:
        return DEFAULT_WINDOW
    if raw == "all":
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"window must be 'all' or an integer >= 0, got {raw!r}")
    return int(raw)


def server_timing(calls, total_ns):
    """A Server-Timing value: each store phase's milliseconds, the store's, then the view's."""
    phases, store = defaultdict(int), 0
    for _, marks in calls:
        for (phase, begin), (_, end) in itertools.pairwise(marks):
            phases[phase] += end - begin
        store += marks[-1][1] - marks[0][1]
    entries = [*phases.items(), ("store", store)] if calls else []
    entries.append(("app", total_ns))
    return ", ".join(f"{name};dur={ns / 1e6:.3f}" for name, ns in entries)


def error(status, message):
    return JsonResponse({"error": message}, status=status)


def unavailable(failure, **fields):
    """503 with Retry-After: Redis (or, for archived turns, the database) did not answer. The
    message names a server: operators read it in the log, the caller gets less."""
    log.warning("session API: %s", failure)
    message = "the conversation store is unavailable, try again"
    response = JsonResponse({"error": message, **fields}, status=503)
    response["Retry-After"] = str(RETRY_AFTER)
    return response
