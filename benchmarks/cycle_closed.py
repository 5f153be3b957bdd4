"""The message cycle in a closed loop: each conversation sends its next message as soon as the
last one is answered; messages per second, both ways, in one process or several.

Async: asyncio tasks on the project's async store (its timeouts, a connection per conversation),
against the old way on a `redis.asyncio.Redis` of its own. Sync: threads on the sync store
(a pool sized for the threads), against the old way on redis-py. Several processes: each its
own event loop (or threads) and its own store, forked after the sessions are seeded, started
together at a barrier; the rate is every message over the span from the first start to the
last end.
"""

import asyncio
import math
import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor

import redis
import redis.asyncio
from django.conf import settings

from benchmarks.cycle_work import (
    async_store,
    old_message,
    store_message,
    sync_old_message,
    sync_store,
    sync_store_message,
)
from sessions_app.store import get_store

CONCURRENCY = (1, 8, 32, 128)
MODES = (("async", 1), ("async", 4), ("sync", 1), ("sync", 4))
MESSAGES = {"store": {"1 MB": 800, "6 MB": 400}, "old": {"1 MB": 48, "6 MB": 8}}
"""Messages per run, per way and size (at least one per conversation): the old way re-encodes
the whole blob each message."""
OLD_TIMEOUT = 60
"""Seconds the old way's clients wait for a reply. With redis-py's default (5 s), 128
conversations of 6 MB in one event loop time out: a reply waits behind the others' json work."""


def url():
    alias = settings.CACHES[settings.ROBOTPERF_STORE["CACHE_ALIAS"]]
    return alias["LOCATION"]


async def _async_run(way, size, names, per, barrier):
    """(start, end) of ``per`` messages on each of ``names``, after a warm-up."""
    turns = (size.user_turn(), size.bot_turn())
    if way == "store":
        store = async_store(len(names))

        def message(name):
            return store_message(store, name, size, turns)

        async def warm(name):
            await store.load(name, window=0)

        close = store.aclose
    else:
        client = redis.asyncio.Redis.from_url(
            url(), socket_timeout=OLD_TIMEOUT, max_connections=len(names)
        )
        legacy = get_store().keys.legacy

        def message(name):
            return old_message(client, legacy(name), size, turns)

        async def warm(name):
            await client.ping()

        close = client.aclose

    async def conversation(name):
        for _ in range(per):
            await message(name)

    try:
        await asyncio.gather(*map(warm, names))  # opens the connections the run will use
        if barrier is not None:
            barrier.wait()
        started = time.perf_counter()
        await asyncio.gather(*map(conversation, names))
        return started, time.perf_counter()
    finally:
        await close()


def _sync_run(way, size, names, per, barrier):
    turns = (size.user_turn(), size.bot_turn())
    if way == "store":
        store = sync_store(len(names))

        def message(name):
            sync_store_message(store, name, size, turns)

        def warm(name):
            store.load(name, window=0)

        close = store.client.close
    else:
        client = redis.Redis.from_url(url(), socket_timeout=OLD_TIMEOUT, max_connections=len(names))
        legacy = get_store().keys.legacy

        def message(name):
            sync_old_message(client, legacy(name), size, turns)

        def warm(name):
            client.ping()

        close = client.close

    def conversation(name):
        for _ in range(per):
            message(name)

    try:
        with ThreadPoolExecutor(len(names)) as threads:
            list(threads.map(warm, names))
            if barrier is not None:
                barrier.wait()
            started = time.perf_counter()
            list(threads.map(conversation, names))
            return started, time.perf_counter()
    finally:
        close()


def _run(kind, *args):
    if kind == "async":
        return asyncio.run(_async_run(*args))
    return _sync_run(*args)


def _child(function, args, results):
    try:
        results.put(function(*args))
    except BaseException as e:  # the parent raises it: a child's traceback alone is lost
        results.put(f"{type(e).__name__}: {e}")
        raise


def forked(function, groups):
    """``function(*args)`` for each ``args`` of ``groups``, each in a forked process (they
    inherit Django's settings and the seeded sessions' names), all at once; their results."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    children = [context.Process(target=_child, args=(function, args, results)) for args in groups]
    for child in children:
        child.start()
    answers = [results.get() for _ in children]
    for child in children:
        child.join()
    failed = [answer for answer in answers if isinstance(answer, str)]
    if failed:
        raise RuntimeError(f"a benchmark process failed: {failed[0]}")
    return answers


def rate(kind, processes, way, size, names, per):
    """Messages per second of ``per`` messages on each conversation of ``names``."""
    if processes == 1:
        spans = [_run(kind, way, size, names, per, None)]
    else:
        groups = [names[i::processes] for i in range(processes) if names[i::processes]]
        barrier = multiprocessing.get_context("fork").Barrier(len(groups))
        spans = forked(_run, [(kind, way, size, group, per, barrier) for group in groups])
    started, ended = min(s for s, _ in spans), max(e for _, e in spans)
    return len(names) * per / (ended - started)


def measure(sessions, sizes):
    """{(kind, processes, size label, n): {way: messages/s}} for every mode, size and count."""
    rates = {}
    for kind, processes in MODES:
        for size in sizes:
            for n in CONCURRENCY:
                cell = rates[kind, processes, size.label, n] = {}
                for way, names in (
                    ("store", [size.cid(i) for i in range(n)]),
                    ("old", [size.legacy_cid(i) for i in range(n)]),
                ):
                    if way == "old":
                        sessions.reset(size, n)
                    per = math.ceil(MESSAGES[way][size.label] / n)
                    cell[way] = rate(kind, processes, way, size, names, per)
    return rates
