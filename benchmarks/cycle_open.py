"""The message cycle in an open loop, the way users talk: messages arrive at a Poisson rate
whatever the robot's backlog, each on a conversation drawn at random, and each is timed from its
arrival (not from when the robot got to it).

A robot process is one event loop, a task per message, as an asyncio web service runs its
handlers; a conversation's messages are handled one at a time (a lock per conversation), and at
most ``IN_FLIGHT`` messages are in hand at once, the rest wait (their wait counts), so an
overloaded run cannot exhaust memory. A run stops ``DRAIN`` seconds after its last arrival:
messages not answered by then count as answered too late. The store is run in one robot process
and in two (each serving half of the conversations, at half the rate, as a load balancer that
keeps a conversation on one process would), each set up as OPERATIONS.md says: `gc.freeze()`
once started, so that Python's full collections skip what start-up made.
"""

import asyncio
import gc
import os
import random
import time
from collections import Counter
from dataclasses import dataclass

import redis.asyncio

from benchmarks.cycle_closed import OLD_TIMEOUT, forked, url
from benchmarks.cycle_work import old_message, store_message
from sessions_app.store import get_async_store, get_store

RATES = (100, 300, 1_000)
PROCESSES = (1, 2)
LADDER = (10, 30, 50, 200, 500)
"""More rates, run for a third of the time, to find the highest each way sustains."""
SECONDS = float(os.environ.get("BENCH_CYCLE_SECONDS", "30"))
"""Seconds of arrivals per rate (`BENCH_CYCLE_SECONDS=5` for a quick run)."""
BOUND = 0.010
"""The p99 a rate must keep to count as sustained."""
IN_FLIGHT = 256
DRAIN = 5.0
HEADROOM = 0.7
"""The old way is run only at rates under this share of its closed-loop rate."""


@dataclass(frozen=True)
class Run:
    rate: int
    seconds: float
    arrived: int
    latencies: list
    errors: Counter

    @property
    def late(self):
        """Messages failed or unanswered: slower than any latency measured."""
        return self.arrived - len(self.latencies)

    def quantile(self, q):
        """The q-quantile of the latencies, the late ones counted as infinitely slow."""
        index = int(q * (self.arrived - 1))
        latencies = sorted(self.latencies)
        return latencies[index] if index < len(latencies) else float("inf")

    @property
    def sustained(self):
        return self.late == 0 and self.quantile(0.99) <= BOUND


async def _open_loop(message, names, rate, seconds, seed):
    rng = random.Random(seed)
    locks = {name: asyncio.Lock() for name in names}
    admitted = asyncio.Semaphore(IN_FLIGHT)
    latencies, errors, tasks = [], Counter(), set()
    clock = time.perf_counter

    async def handle(name, arrival):
        try:
            async with admitted, locks[name]:
                await message(name)
        except Exception as e:  # counted and shown: a run goes on past a failed message
            errors[f"{type(e).__name__}: {str(e)[:200]}"] += 1
        else:
            latencies.append(clock() - arrival)

    arrival = clock() + 0.1
    end, arrived = arrival + seconds, 0
    while (arrival := arrival + rng.expovariate(rate)) < end:
        delay = arrival - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(handle(rng.choice(names), arrival))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        arrived += 1
    if tasks:
        await asyncio.wait(list(tasks), timeout=max(0.0, end + DRAIN - clock()))
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return Run(rate, seconds, arrived, latencies, errors)


async def _run_way(way, size, names, plan, process=0):
    turns = (size.user_turn(), size.bot_turn())
    if way == "store":
        store = get_async_store()

        def message(name):
            return store_message(store, name, size, turns)

        warm = [store.load(name, window=0) for name in names[:IN_FLIGHT]]
        close = store.aclose
    else:
        client = redis.asyncio.Redis.from_url(
            url(), socket_timeout=OLD_TIMEOUT, max_connections=IN_FLIGHT
        )
        legacy = get_store().keys.legacy

        def message(name):
            return old_message(client, legacy(name), size, turns)

        warm = [client.ping() for _ in range(64)]
        close = client.aclose
    try:
        await asyncio.gather(*warm)
        # The same arrivals for both ways at a rate: the seed is the rate (and the process).
        return [
            await _open_loop(message, names, rate, seconds, f"{rate}/{process}")
            for rate, seconds in plan
        ]
    finally:
        await close()


def plan():
    """(rate, seconds) of every run, the issue's rates for the full time."""
    runs = [(rate, SECONDS) for rate in RATES] + [(rate, SECONDS / 3) for rate in LADDER]
    return sorted(runs)


def _robot_process(way, size, names, runs, process, freeze):
    """One robot process's runs (forked): its share of each rate, on its conversations."""
    if freeze:
        gc.freeze()
    return asyncio.run(_run_way(way, size, names, runs, process))


def merged(runs):
    """One Run of the processes' runs of the same rate."""
    return Run(
        round(sum(run.rate for run in runs)),
        runs[0].seconds,
        sum(run.arrived for run in runs),
        [latency for run in runs for latency in run.latencies],
        sum((run.errors for run in runs), Counter()),
    )


def in_processes(way, size, names, runs, processes, *, freeze=True):
    """The ``runs`` (rate, seconds) spread over ``processes`` robot processes, merged."""
    groups = [
        (way, size, names[i::processes], [(rate / processes, s) for rate, s in runs], i, freeze)
        for i in range(processes)
    ]
    per_process = forked(_robot_process, groups)
    return [merged([own[i] for own in per_process]) for i in range(len(runs))]


def measure(sessions, size, conversations, old_capacity, without_freeze_at):
    """{(way, processes): [Run]}: the store at every rate, the old way (one process) at the
    rates it can sustain; and ("store", "no freeze"): one process without `gc.freeze()`, at the
    rate ``without_freeze_at``."""
    store_names = [size.cid(i) for i in range(conversations)]
    old_names = [size.legacy_cid(i) for i in range(conversations)]
    runs = {("store", n): in_processes("store", size, store_names, plan(), n) for n in PROCESSES}
    runs["store", "no freeze"] = in_processes(
        "store", size, store_names, [(without_freeze_at, SECONDS)], 1, freeze=False
    )
    old_plan = [(rate, s) for rate, s in plan() if rate <= HEADROOM * old_capacity]
    if not old_plan:  # a rate it can keep up with, to compare latencies at all
        old_plan = [(max(1, int(HEADROOM * old_capacity / 2)), SECONDS / 3)]
    sessions.reset(size, conversations)
    runs["old", 1] = in_processes("old", size, old_names, old_plan, 1)
    return runs
