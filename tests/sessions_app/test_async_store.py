"""The async store outside Django: built from a Redis URL and the codec options alone, in a
process where DJANGO_SETTINGS_MODULE is unset, as the asyncio robot service would build it."""

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
from django.conf import settings

from sessions_app.demo import make_session
from sessions_app.store import AsyncConversationStore, StoreUnavailable, get_store
from tests.sessions_app.factories import save_session

ROOT = Path(__file__).resolve().parents[2]
# Run in the child: save, append, update and load, then report what Django saw of it.
ROBOT = """
import asyncio, os, sys
import orjson
from convstore import AsyncConversationStore

async def main(url):
    store = AsyncConversationStore.from_url(url)
    try:
        saved = await store.save({
            "conversation_id": "robot-1",
            "bot_id": 7,
            "record": {"LOOP_COUNT": [], "HISTORY_QUESTION": []},
            "bot_config": {"scenario": ["greet"], "system_prompt": "Be kind."},
            "history": [{"role": "system", "content": "start"}],
        })
        seqs = await store.append_turns("robot-1", [{"role": "user", "content": "Xin chào"}])
        updated = await store.update_state("robot-1", {"record": {"LOOP_COUNT": [1]}}, saved)
        loaded = await store.load("robot-1", window=20)
    finally:
        await store.aclose()
    return {"saved": saved, "seqs": seqs, "updated": updated, "loaded": loaded}

result = asyncio.run(main(sys.argv[1]))
from django.conf import settings
result["settings_configured"] = settings.configured
result["settings_module"] = os.environ.get("DJANGO_SETTINGS_MODULE")
print(orjson.dumps(result).decode())
"""


def test_builds_and_runs_without_django_settings():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    url = settings.CACHES["sessions"]["LOCATION"]
    child = subprocess.run(
        [sys.executable, "-c", ROBOT, url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    result = orjson.loads(child.stdout.strip().splitlines()[-1])
    # Any read of a setting would have failed the child (no settings module to read them from).
    assert (result["settings_module"], result["settings_configured"]) == (None, False)
    assert (result["saved"], result["seqs"], result["updated"]) == (1, [1], 2)
    loaded = result["loaded"]
    assert loaded["record"] == {"LOOP_COUNT": [1]}
    assert loaded["bot_config"] == {"scenario": ["greet"], "system_prompt": "Be kind."}
    assert [(t["seq"], t["content"]) for t in loaded["history"]] == [(0, "start"), (1, "Xin chào")]
    assert (loaded["_rev"], loaded["_turns"]) == (2, 2)
    # The same layout as the Django store's: the project reads what the robot wrote.
    assert get_store().load("robot-1", window=20) == loaded


def test_one_client_per_live_event_loop(store):
    from sessions_app.store import get_async_store

    save_session(store, "c1", turns=3)
    async_store = get_async_store()
    for _ in range(3):  # each asyncio.run is a new loop, closed at its end, as runserver does
        assert asyncio.run(async_store.load("c1"))["_turns"] == 3
    assert len(async_store._clients) <= 1


def test_more_concurrent_loads_than_connections_wait_for_one(store, settings):
    from sessions_app.store import get_async_store

    options = settings.CACHES["sessions"]["OPTIONS"]
    pool = {**options.get("CONNECTION_POOL_KWARGS", {}), "max_connections": 4}
    settings.CACHES = {
        **settings.CACHES,
        "sessions": {
            **settings.CACHES["sessions"],
            "OPTIONS": {**options, "CONNECTION_POOL_KWARGS": pool},
        },
    }
    save_session(store, "c1", turns=30)

    async def main():
        async_store = get_async_store()
        try:
            return await asyncio.gather(*(async_store.load("c1") for _ in range(80)))
        finally:
            await async_store.aclose()

    assert [loaded["_turns"] for loaded in asyncio.run(main())] == [30] * 80


# Loads of a 1 MB session decode for a millisecond or more each, all in one event loop: a
# thousand of them keep two connections busy for well over the pool's 0.2 s wait.
OVERLOAD_LOADS = 1_000


def test_an_exhausted_pool_fails_as_overload_never_as_unreachable(store):
    session = make_session(0, steps=300, turns=1_000, prefix="overload-")
    store.save(session)
    cid = session["conversation_id"]
    url = settings.CACHES["sessions"]["LOCATION"]
    tiny = {"max_connections": 2, "socket_timeout": 0.2}
    async_store = AsyncConversationStore(url, store.codec, keys=store.keys, client_options=tiny)

    async def main():
        try:
            loads = (async_store.load(cid, window=20) for _ in range(OVERLOAD_LOADS))
            return await asyncio.gather(*loads, return_exceptions=True)
        finally:
            await async_store.aclose()

    results = asyncio.run(main())
    failures = [r for r in results if isinstance(r, BaseException)]
    loaded = [r for r in results if not isinstance(r, BaseException)]
    assert failures, "the pool never ran out: more loads, or a bigger session"
    assert loaded
    assert all(r["_turns"] == 1_000 for r in loaded)
    # A 503 still (a kind of StoreUnavailable), but one that says what happened and by how
    # much: nothing was sent, so nothing may have been written.
    assert {type(f).__name__ for f in failures} <= {"StoreOverloaded"}
    for failure in failures:
        assert isinstance(failure, StoreUnavailable)
        assert not failure.maybe_written
        assert "unreachable" not in str(failure)
    overload = r"overloaded: the pool of 2 connections .* exhausted for \d+\.\d\d s \(.* 0\.2 s\)"
    with pytest.raises(StoreUnavailable, match=overload):
        raise failures[0]


def test_threads_sharing_one_store_never_trip_over_its_caches(store):
    from convstore.core import StoreCore

    small = StoreCore(store.codec, keys=store.keys, cache_size=1)  # 16 shapes at most
    for n in range(40):
        save_session(store, f"c{n}", turns=1)
    errors = []

    def work(offset):
        try:
            for n in range(200):
                store.run(small.append_turns(f"c{(n + offset) % 40}", [{"role": "user"}]))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(store.load(f"c{n}", window=0)["_turns"] for n in range(40)) == 40 + 8 * 200
