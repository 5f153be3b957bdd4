"""Redis killed and restarted empty while the robot appends (sync threads and asyncio tasks) and
compaction trims: every turn acknowledged after the restart is found exactly once.

The sessions are primary data in Redis, so what it held before the kill is gone; what matters is
that the conversations the robot saves again are never mixed with, or lost to, the archived
turns of their earlier life.
"""

import asyncio
import threading
import time
from collections import Counter

import pytest
from django.db import connection

from locks import LockHeld, LockUnavailable
from sessions_app.services import CompactionPolicy, compact_oversized
from sessions_app.store import (
    SessionNotFound,
    StoreUnavailable,
    get_async_store,
    get_store,
)

SYNC_APPENDERS, ASYNC_APPENDERS = 3, 3
SECONDS_BEFORE, SECONDS_AFTER = 1.5, 2.5


def session(cid):
    return {"conversation_id": cid, "bot_id": "drill", "record": {}, "history": []}


class Ledger:
    """The turns each conversation's appender was told were written, with when it asked."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = []
        self.restarted_at = None

    def ack(self, cid, content, asked_at):
        with self.lock:
            self.acked.append((cid, content, asked_at))

    def after_restart(self):
        return [(cid, text) for cid, text, asked in self.acked if asked > self.restarted_at]


def sync_appender(cid, ledger, stop):
    store, n = get_store(), 0
    while not stop.is_set():
        content, asked = f"{cid}-{n}", time.monotonic()
        n += 1
        try:
            store.append_turns(cid, [{"role": "user", "content": content}])
        except SessionNotFound:
            store.save(session(cid))
            continue
        except StoreUnavailable:
            time.sleep(0.02)
            continue
        ledger.ack(cid, content, asked)


async def async_appender(store, cid, ledger, stop):
    n = 0
    while not stop.is_set():
        content, asked = f"{cid}-{n}", time.monotonic()
        n += 1
        try:
            await store.append_turns(cid, [{"role": "user", "content": content}])
        except SessionNotFound:
            await store.save(session(cid))
            continue
        except StoreUnavailable:
            await asyncio.sleep(0.02)
            continue
        ledger.ack(cid, content, asked)


def async_appenders(cids, ledger, stop):
    async def main():
        store = get_async_store()
        await asyncio.gather(*(async_appender(store, cid, ledger, stop) for cid in cids))
        await store.aclose()

    asyncio.run(main())


def compactor(stop, errors):
    policy = CompactionPolicy(max_bytes=10**9, max_turns=8, keep_turns=3, batch_size=4)
    try:
        while not stop.is_set():
            try:
                compact_oversized(policy)
            except (StoreUnavailable, LockHeld, LockUnavailable):
                time.sleep(0.02)
    except Exception as e:  # any other failure fails the test
        errors.append(e)
    finally:
        connection.close()


@pytest.fixture
def drill_redis(sessions_redis):
    return sessions_redis()


@pytest.mark.django_db(transaction=True)
def test_every_turn_acknowledged_after_a_restart_empty_is_found_exactly_once(drill_redis):
    store = get_store()
    sync_cids = [f"drill-sync-{n}" for n in range(SYNC_APPENDERS)]
    async_cids = [f"drill-async-{n}" for n in range(ASYNC_APPENDERS)]
    for cid in sync_cids + async_cids:
        store.save(session(cid))
    ledger, stop, errors = Ledger(), threading.Event(), []
    threads = [threading.Thread(target=sync_appender, args=(c, ledger, stop)) for c in sync_cids]
    threads.append(threading.Thread(target=async_appenders, args=(async_cids, ledger, stop)))
    threads.append(threading.Thread(target=compactor, args=(stop, errors)))
    for thread in threads:
        thread.start()
    try:
        time.sleep(SECONDS_BEFORE)
        drill_redis.restart_empty()
        ledger.restarted_at = time.monotonic()
        time.sleep(SECONDS_AFTER)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors

    compact_oversized(CompactionPolicy(max_bytes=10**9, max_turns=8, keep_turns=3))
    acked = ledger.after_restart()
    assert len(acked) > 100, "the drill appended too little to prove anything"
    found = Counter()
    for cid in sync_cids + async_cids:
        history = store.load(cid, window=None)["history"]
        found.update((cid, turn["content"]) for turn in history)
        assert [turn["seq"] for turn in history] == list(range(len(history)))
    assert [turn for turn in acked if found[turn] != 1] == []
    assert max(found.values()) == 1, "a turn is in Redis and the archive both"
