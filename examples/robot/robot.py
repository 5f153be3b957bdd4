"""A small robot service on the convstore library alone: the seed's load-conversation endpoint
and the robot's message cycle (load; then the state change and the user's and the bot's turns in
one write), over aiohttp.

    python examples/robot/robot.py --redis-url redis://127.0.0.1:6379/0 --port 8100

Its store calls slower than SLOW_CALL_THRESHOLD_MS (default 50) go to the slow-call log in the
same Redis, where the admin's "Slow calls" page and dashboard read them; SLOW_CALL_LOG=0 turns
the log off.
"""

import argparse
import gc
import os

from aiohttp import web

from convstore import (
    AsyncConversationStore,
    CorruptSession,
    SessionNotFound,
    StaleRevision,
    StoreUnavailable,
    enable_slow_log,
)

STORE = web.AppKey("store", AsyncConversationStore)
WINDOW = 20


def reply_to(text, loop_count):
    """The tutor's answer: a stand-in for the LLM call the real robot makes here."""
    return f"({loop_count}) Bạn nói: {text}"


async def load_conversation(request):
    """The seed's robot-v2.load-conversation: the session with its last turns."""
    window = int(request.query.get("window", WINDOW))
    session = await request.app[STORE].load(request.match_info["cid"], window=window)
    if session is None:
        raise web.HTTPNotFound(text="no such conversation")
    return web.json_response(session)


async def start_conversation(request):
    body = await request.json()
    cid = request.match_info["cid"]
    session = {
        "conversation_id": cid,
        "bot_id": body.get("bot_id"),
        "user_id": body.get("user_id"),
        "bot_config": body.get("bot_config") or {"scenario": [], "system_prompt": ""},
        "record": {"LOOP_COUNT": {}, "HISTORY_QUESTION": []},
        "history": [{"role": "system", "content": "start"}],
    }
    rev = await request.app[STORE].save(session)
    return web.json_response({"conversation_id": cid, "rev": rev}, status=201)


async def message(request):
    """One message: the cycle the robot runs for each thing a child says. Two round trips: the
    load, then the state change and both turns in one write checked against the loaded rev."""
    store, cid = request.app[STORE], request.match_info["cid"]
    body = await request.json()
    text, step = body["text"], body.get("step", "step_0000")
    user_turn = {"role": "user", "content": text, "step": step}
    session = await store.load(cid, window=WINDOW)
    if session is None:
        raise web.HTTPNotFound(text="no such conversation")
    for _ in range(3):  # another writer moved the state: read it again and reapply
        record = session["record"]
        loop = record.setdefault("LOOP_COUNT", {}).setdefault(step, {"count": 0})
        loop["count"] += 1
        answer = reply_to(text, loop["count"])
        bot_turn = {"role": "assistant", "content": answer, "step": step}
        try:
            # Only the loop counts changed: merged into record, which is stored split.
            rev = await store.update_state(
                cid,
                {},
                session["_rev"],
                append=[user_turn, bot_turn],
                merge={"record": {"LOOP_COUNT": record["LOOP_COUNT"]}},
            )
            break
        except StaleRevision:
            session = await store.load(cid, window=0)
    else:
        raise web.HTTPConflict(text="the conversation keeps changing: try again")
    return web.json_response({"reply": answer, "rev": rev})


@web.middleware
async def store_errors(request, handler):
    """The store's errors as HTTP answers: 404 not found, 503 Redis unavailable, 500 corrupt."""
    try:
        return await handler(request)
    except SessionNotFound as e:
        raise web.HTTPNotFound(text=str(e)) from e
    except StoreUnavailable as e:
        raise web.HTTPServiceUnavailable(text=str(e), headers={"Retry-After": "1"}) from e
    except CorruptSession as e:
        raise web.HTTPInternalServerError(text=str(e)) from e


def make_app(redis_url):
    app = web.Application(middlewares=[store_errors])
    app[STORE] = AsyncConversationStore.from_url(
        redis_url, ttl=7 * 24 * 3600, split_keys=("record",)
    )

    async def close_store(app):
        await app[STORE].aclose()

    app.on_cleanup.append(close_store)
    app.add_routes(
        [
            web.get("/conversations/{cid}", load_conversation),
            web.put("/conversations/{cid}", start_conversation),
            web.post("/conversations/{cid}/messages", message),
        ]
    )
    return app


def log_slow_calls(redis_url, environ=os.environ):
    """The slow-call log, as the environment asks; None when SLOW_CALL_LOG=0."""
    if environ.get("SLOW_CALL_LOG", "1") == "0":
        return None
    threshold = float(environ.get("SLOW_CALL_THRESHOLD_MS", "50")) / 1000
    return enable_slow_log(redis_url, threshold=threshold, name="robot")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    options = parser.parse_args()
    app = make_app(options.redis_url)
    log_slow_calls(options.redis_url)
    # What start-up made lives as long as the process: keep it out of Python's full garbage
    # collections, which otherwise stall the event loop for tens of milliseconds now and then
    # under load (measured: PERFORMANCE.md, the message cycle).
    gc.freeze()
    web.run_app(app, host=options.host, port=options.port)
