"""Load test of the served stack: the production processes of `make serve` on loopback ports
(gunicorn with uvicorn workers, DEBUG off, the phoneme server), driven by aiohttp clients.

The sessions API (load the last 20 turns; append a turn) and the phoneme API (cached pairs)
at 1, 8, 32 and 128 concurrent clients: requests/s, p50 and p99, errors. Then a soak of mixed
traffic (BENCH_SOAK_SECONDS, default 30; 600 for the 10-minute soak) sampling each worker's
RSS: the median of its first and of its last minute (or third, for a shorter soak) side by side.
A worker's RSS moves by 10-15 % from one second to the next (responses built and freed): a
leak is a trend between the two windows, not one reading.
"""

import asyncio
import itertools
import os
import random
import statistics
import tempfile
import threading
import time

import aiohttp
from django.conf import settings
from django.test import override_settings

from benchmarks.timing import verdict
from scripts.served_stack import ServedStack, rss_bytes
from sessions_app import seeding
from sessions_app.demo import make_session
from sessions_app.store import get_store

CONCURRENCY = [1, 8, 32, 128]
SECONDS = float(os.environ.get("BENCH_SERVE_SECONDS", "4"))
SOAK_SECONDS = float(os.environ.get("BENCH_SOAK_SECONDS", "30"))
SOAK_CLIENTS = 32
WORKERS = 2
SESSIONS, STEPS, TURNS = 200, 300, 100
PREFIX = "rpserve"
WORDS = ["cat", "bat", "hat", "sea", "tree", "house", "river", "mountain", "robot", "teacher"]
TEXTS = [f"{a} {b}" for a, b in itertools.product(WORDS, WORDS)]
RSS_GROWTH_LIMIT = 0.10
SAMPLE_EVERY = 0.25  # seconds between two readings of each worker's RSS


def run():
    store_settings = {**settings.ROBOTPERF_STORE, "KEY_PREFIX": PREFIX}
    with override_settings(ROBOTPERF_STORE=store_settings), tempfile.TemporaryDirectory() as var:
        store = get_store()
        _clean(store)
        try:
            seed_seconds = _seed(store)
            stack = ServedStack(
                var,
                redis_url=os.environ["REDIS_URL"],
                workers=WORKERS,
                STORE_KEY_PREFIX=PREFIX,
                LOCK_KEY_PREFIX=f"{PREFIX}:lock:",
            )
            with stack:
                results = asyncio.run(_load(stack))
                soak = _soak(stack)
        finally:
            _clean(store)
    return _report(results, soak, seed_seconds)


def _seed(store):
    started = time.perf_counter()
    sessions = (make_session(i, steps=STEPS, turns=TURNS, prefix="serve-") for i in range(SESSIONS))
    seeding.save_many(store, sessions, batch=50)
    return time.perf_counter() - started


def _clean(store):
    for keys in itertools.batched(store.client.scan_iter(match=f"{PREFIX}:*", count=1000), 1000):
        store.client.delete(*keys)


# --- the requests --------------------------------------------------------------------------


def _requests(stack):
    """{name: a function of a random generator giving (method, url, json body)}."""
    sessions = f"{stack.url}/api/sessions/serve-"
    return {
        "sessions: load, window 20": lambda rng: (
            "GET",
            f"{sessions}{rng.randrange(SESSIONS):06d}",
            None,
        ),
        "sessions: append a turn": lambda rng: (
            "POST",
            f"{sessions}{rng.randrange(SESSIONS):06d}/turns",
            {"turns": [{"role": "user", "content": f"load test {rng.random()}"}]},
        ),
        "phonemes: similarity, cached": lambda rng: (
            "POST",
            f"{stack.url}/api/phonemes/similarity",
            {"text_1": rng.choice(TEXTS), "text_2": rng.choice(TEXTS), "lang": "en"},
        ),
    }


async def _load(stack):
    headers = {"Authorization": f"Bearer {stack.api_token}"}
    results = {}
    async with aiohttp.ClientSession(headers=headers) as http:
        await _warm_up(http, stack)
        for name, make in _requests(stack).items():
            for clients in CONCURRENCY:
                results[name, clients] = await _drive(http, make, clients, SECONDS)
    return results


async def _warm_up(http, stack):
    """Every text looked up once: the phoneme figures are of the cache, as the robot sees it."""
    url = f"{stack.url}/api/phonemes/similarity"
    for text in TEXTS:
        async with http.post(url, json={"text_1": text, "text_2": text}) as answer:
            await answer.read()


async def _drive(http, make, clients, seconds):
    """``clients`` tasks, each sending one request after the other for ``seconds``."""
    latencies, errors = [], {}
    deadline = time.perf_counter() + seconds

    async def client(n):
        rng = random.Random(n)
        while time.perf_counter() < deadline:
            method, url, body = make(rng)
            started = time.perf_counter()
            try:
                async with http.request(method, url, json=body) as answer:
                    await answer.read()
                    status = answer.status
            except aiohttp.ClientError as e:
                status = type(e).__name__
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors[status] = errors.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rate": len(latencies) / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[int(0.99 * (len(latencies) - 1))],
        "requests": len(latencies),
        "errors": errors,
    }


def _soak(stack):
    """Mixed traffic for SOAK_SECONDS; each worker's RSS sampled meanwhile."""
    pids = stack.worker_pids()
    samples = {pid: [] for pid in pids}
    done = threading.Event()

    def sample():
        while not done.wait(SAMPLE_EVERY):
            for pid in pids:
                samples[pid].append(rss_bytes(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        mixed = list(_requests(stack).values())

        def make(rng):
            return rng.choice(mixed)(rng)

        async def soak():
            headers = {"Authorization": f"Bearer {stack.api_token}"}
            async with aiohttp.ClientSession(headers=headers) as http:
                return await _drive(http, make, SOAK_CLIENTS, SOAK_SECONDS)

        traffic = asyncio.run(soak())
    finally:
        done.set()
        sampler.join()
    window = min(60.0, SOAK_SECONDS / 3)
    count = max(1, int(window / SAMPLE_EVERY))
    workers = {
        pid: (statistics.median(rss[:count]), statistics.median(rss[-count:]), min(rss), max(rss))
        for pid, rss in samples.items()
    }
    return {"traffic": traffic, "workers": workers, "window": window}


# --- the report ----------------------------------------------------------------------------


def _report(results, soak, seed_seconds):
    names = list(dict.fromkeys(name for name, _ in results))
    lines = [
        "## The served stack under load (`make serve`'s processes on loopback)\n",
        "| API | clients | requests/s | p50 | p99 | errors |",
        "|---|---|---|---|---|---|",
    ]
    every_error = {}
    for name in names:
        for clients in CONCURRENCY:
            r = results[name, clients]
            every_error.update(r["errors"])
            errors = ", ".join(f"{n} x {s}" for s, n in r["errors"].items()) or "0"
            lines.append(
                f"| {name} | {clients} | {r['rate']:,.0f} | {r['p50'] * 1e3:.1f} ms | "
                f"{r['p99'] * 1e3:.1f} ms | {errors} |"
            )
    traffic, window = soak["traffic"], soak["window"]
    lines += [
        "",
        f"Soak: {SOAK_SECONDS:.0f} s of mixed traffic (the three requests at random, "
        f"{SOAK_CLIENTS} clients): {traffic['requests']:,} requests, "
        f"{traffic['rate']:,.0f}/s, p50 {traffic['p50'] * 1e3:.1f} ms, p99 "
        f"{traffic['p99'] * 1e3:.1f} ms, {sum(traffic['errors'].values())} errors. Each "
        f"worker's RSS read every {SAMPLE_EVERY:g} s: the median of its first and of its last "
        f"{window:g} s, and its range over the soak:",
        "",
        "| worker | first | last | growth | range | verdict |",
        "|---|---|---|---|---|---|",
    ]
    mib = 2**20
    for n, (first, last, low, high) in enumerate(soak["workers"].values(), 1):
        growth = last / first - 1
        lines.append(
            f"| {n} | {first / mib:.1f} MiB | {last / mib:.1f} MiB | {growth:+.1%} | "
            f"{low / mib:.0f} to {high / mib:.0f} MiB | "
            f"{verdict(growth <= RSS_GROWTH_LIMIT)} (≤ {RSS_GROWTH_LIMIT:.0%}) |"
        )
    every_error.update(traffic["errors"])
    lines += [
        "",
        f"No error at any concurrency: {verdict(not every_error)}.\n",
        f"How: `scripts/served_stack.py` starts gunicorn ({WORKERS} uvicorn workers, DEBUG off, "
        "access log off) and the phoneme server on free loopback ports, with a throwaway SQLite "
        f"database; Redis is the benchmarks' (`BENCH_REDIS_URL`), under a key prefix of its own. "
        f"{SESSIONS} demo sessions ({STEPS} steps, {TURNS} turns) seeded in "
        f"{seed_seconds:.1f} s. Each row: that many aiohttp clients in one event loop, each "
        f"sending its next request when the last one answered, for {SECONDS:g} s "
        "(`BENCH_SERVE_SECONDS`); the phoneme pairs are drawn from 100 texts each looked up "
        "once before. The clients, the workers, Redis and the phoneme server share the "
        "machine's CPUs. `python -m benchmarks serve` runs this section alone; "
        "`BENCH_SOAK_SECONDS=600` makes the soak 10 minutes.\n",
    ]
    return "\n".join(lines)
