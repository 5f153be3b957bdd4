"""Async store: concurrent asyncio tasks loading the 1 MB session, against the seed's way.

The store is built as a robot outside Django would build it, from a Redis URL and the codec
OPTIONS (`AsyncConversationStore.from_url`); the seed's way is `await redis.get(key)` on a
redis.asyncio client and `json.loads` of the legacy blob. Both run in the same event loop, in
alternating rounds.
"""

import asyncio
import json
import statistics
import time

import redis.asyncio
from django.conf import settings

from convstore.codec import bot_config_digest
from sessions_app.demo import make_session
from sessions_app.store import AsyncConversationStore, get_store

WINDOW = 20
STEPS, TURNS = 300, 1_000
CONCURRENCY = (1, 8, 32)
LOADS = {"store": 1_500, "seed": 200}
"""Loads per run: the seed's way decodes a megabyte per load."""
ROUNDS = 3
CID, LEGACY_CID = "bench-async", "bench-async-legacy"


def run():
    store = get_store()
    session = make_session(0, steps=STEPS, turns=TURNS, prefix="bench-async-")
    session["conversation_id"] = CID
    store.save(session)
    legacy_key = store.keys.legacy(LEGACY_CID)
    store.client.set(legacy_key, json.dumps({**session, "conversation_id": LEGACY_CID}))
    try:
        rates = asyncio.run(measure(store, legacy_key))
    finally:
        store.delete(CID)
        store.client.delete(
            legacy_key, store.keys.bot_config(bot_config_digest(session["bot_config"]))
        )
    return report(rates)


async def measure(sync_store, legacy_key):
    alias = settings.CACHES[settings.ROBOTPERF_STORE["CACHE_ALIAS"]]
    url = alias["LOCATION"]
    store = AsyncConversationStore.from_url(url, sync_store.codec, keys=sync_store.keys)
    client = redis.asyncio.Redis.from_url(url)
    try:
        if await store.load(CID, window=WINDOW) != sync_store.load(CID, window=WINDOW):
            raise RuntimeError("the async store loads another session than the sync one")

        async def store_load():
            await store.load(CID, window=WINDOW)

        async def seed_load():
            json.loads(await client.get(legacy_key))

        ways = {"store": store_load, "seed": seed_load}
        rates = {(way, n): [] for way in ways for n in CONCURRENCY}
        for load in ways.values():  # warm-up: open every connection the runs will use
            await drive(load, max(CONCURRENCY), max(CONCURRENCY))
        for _ in range(ROUNDS):
            for n in CONCURRENCY:
                for way, load in ways.items():
                    rates[way, n].append(await drive(load, LOADS[way], n))
        return {key: statistics.median(runs) for key, runs in rates.items()}
    finally:
        await store.aclose()
        await client.aclose()


async def drive(load, loads, tasks):
    """Loads per second of ``tasks`` tasks making ``loads`` loads between them."""
    remaining = iter(range(loads))

    async def task():
        for _ in remaining:
            await load()

    started = time.perf_counter()
    await asyncio.gather(*(task() for _ in range(tasks)))
    return loads / (time.perf_counter() - started)


def report(rates):
    lines = [
        "## Async store (asyncio robot)\n",
        f"Concurrent tasks loading the 1 MB demo session ({STEPS:,} steps, {TURNS:,} turns), "
        f"loads per second, median of {ROUNDS} alternating runs of a fixed number of loads "
        f"(store {LOADS['store']:,}, seed's way {LOADS['seed']:,}):\n",
        f"| tasks | `AsyncConversationStore.load(window={WINDOW})` | seed's way: `await get` + "
        "`json.loads` | ratio |",
        "|---|---|---|---|",
    ]
    for n in CONCURRENCY:
        store, seed = rates["store", n], rates["seed", n]
        lines.append(f"| {n} | {store:,.0f} | {seed:,.0f} | {store / seed:.1f}x |")
    lines += [
        "",
        "How: `AsyncConversationStore.from_url(url, codec)` on redis.asyncio (one "
        "pooled client for the loop, closed with `aclose()`), checked to load what the sync "
        "store loads; the seed's way on a `redis.asyncio.Redis` of its own; one event loop, "
        "one process, so decoding is never parallel: concurrency only overlaps the round "
        "trips. Every connection is opened in a warm-up run first.\n",
    ]
    return "\n".join(lines)
