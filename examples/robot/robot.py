"""A small robot service on the convstore library alone: the seed's load-conversation endpoint
and the robot's message cycle (load, append the user's turn, update the state, append the bot's
turn), over aiohttp.

    python examples/robot/robot.py --redis-url redis://127.0.0.1:6379/0 --port 8100

Its store calls slower than SLOW_CALL_THRESHOLD_MS (default 50) go to the slow-call log in the
same Redis, where the admin's "Slow calls" page and dashboard read them; SLOW_CALL_LOG=0 turns
the log off.
"""

import argparse
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
        "record": {"LOOP_COUNT": 0, "HISTORY_QUESTION": []},
        "history": [{"role": "system", "content": "start"}],
    }
    rev = await request.app[STORE].save(session)
    return web.json_response({"conversation_id": cid, "rev": rev}, status=201)


async def message(request):
    """One message: the cycle the robot runs for each thing a child says."""
    store, cid = request.app[STORE], request.match_info["cid"]
    text = (await request.json())["text"]
    session = await store.load(cid, window=WINDOW)
    if session is None:
        raise web.HTTPNotFound(text="no such conversation")
    (user_seq,) = await store.append_turns(cid, [{"role": "user", "content": text}])
    for _ in range(3):  # another writer moved the state: read it again and reapply
        record = session["record"]
        record["LOOP_COUNT"] = record.get("LOOP_COUNT", 0) + 1
        try:
            await store.update_state(cid, {"record": record}, session["_rev"])
            break
        except StaleRevision:
            session = await store.load(cid, window=0)
    else:
        raise web.HTTPConflict(text="the conversation keeps changing: try again")
    answer = reply_to(text, record["LOOP_COUNT"])
    (bot_seq,) = await store.append_turns(cid, [{"role": "assistant", "content": answer}])
    return web.json_response({"reply": answer, "seqs": [user_seq, bot_seq]})


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
    app[STORE] = AsyncConversationStore.from_url(redis_url, ttl=7 * 24 * 3600)

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
    log_slow_calls(options.redis_url)
    web.run_app(make_app(options.redis_url), host=options.host, port=options.port)
