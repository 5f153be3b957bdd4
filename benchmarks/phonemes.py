"""Phoneme benchmarks: the pooled client against a session per request, the cached path's rate,
and the resident memory of tier 1 after a million distinct texts.

The reference server runs in a subprocess on a loopback port with a fixed latency.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import orjson
import urllib3
from django.conf import settings
from django.test import override_settings
from rapidfuzz.distance import Levenshtein

from benchmarks.timing import verdict
from phonemes.client import ClientConfig, PhonemeClient
from phonemes.models import PhonemeCacheEntry
from phonemes.services import phoneme_similarity

ROOT = Path(__file__).resolve().parent.parent
LATENCY_MS = 2
COMPARISONS = 500
IN_FLIGHT = 16
ROUNDS = 3
CACHED_PAIRS = 1_000
CACHED_CALLS = 200_000
DISTINCT_TEXTS = 1_000_000
TIER1_CAP = 64 * 1024 * 1024
# RSS may exceed the byte cap by this much: the allocator's slack and the hash table's spare room.
RSS_SLACK = 4 * 1024 * 1024
VERSION = "bench"
WORDS = (
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "while",
    "robots",
    "read",
    "books",
    "about",
    "apples",
    "bananas",
    "and",
    "quiet",
    "rivers",
    "under",
    "bright",
    "morning",
    "skies",
    "children",
    "laugh",
    "teachers",
    "listen",
    "friends",
    "play",
    "games",
)

# Run in a fresh interpreter: RSS before and after filling a tier-1 cache (or a plain dict, the
# old unbounded cache) with distinct texts, each with a dozen phonemes of a small alphabet.
RSS_SCRIPT = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
import django
django.setup()
from phonemes.cache import BoundedLRU, freeze
kind, count, cap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
alphabet = ["k", "a", "t", "s", "\u0259", "n", "\u026a", "l", "d", "\u0252", "m", "e\u026a"]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = peak = rss()
cache = BoundedLRU(max_entries=10**9, max_bytes=cap) if kind == "lru" else {}
put = cache.put if kind == "lru" else cache.__setitem__
for i in range(count):
    phonemes = freeze([alphabet[(i >> s) % 12] for s in range(0, 24, 2)])
    put(f"en\\x1fsentence number {i} spoken by the robot", phonemes)
    if i % 4096 == 0:
        peak = max(peak, rss())
after = rss()
peak = max(peak, after)
print(json.dumps({"growth": after - before, "peak_growth": peak - before, "entries": len(cache)}))
"""


def run():
    with reference_server() as url:
        throughput, warmup_connections = measure_uncached(url)
        cached = measure_cached(url)
    memory = {kind: measure_rss(kind) for kind in ("lru", "dict")}
    return report(throughput, warmup_connections, cached, memory)


@contextmanager
def reference_server():
    command = [sys.executable, "manage.py", "run_phoneme_server", "--port", "0"]
    command += ["--latency-ms", str(LATENCY_MS)]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.settings"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the reference phoneme server did not start: {line!r}")
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        process.terminate()
        process.wait(10)


def texts(n, offset=0):
    return [" ".join(WORDS[(i * k + offset) % len(WORDS)] for k in (1, 3, 7, 11)) for i in range(n)]


# --- uncached: a session per request against the shared pooled client --------------------


async def fetch_with_new_session(endpoint, text):
    """The old way: every text opens, uses and closes its own session and connection."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(endpoint, json={"text": text, "lang": "en"}) as response,
    ):
        return (await response.json())["phonemes"]


async def compare_all(fetch, pairs):
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def compare(text_1, text_2):
        async with slots:
            phonemes_1, phonemes_2 = await asyncio.gather(fetch(text_1), fetch(text_2))
            return Levenshtein.normalized_similarity(phonemes_1, phonemes_2)

    started = time.perf_counter()
    await asyncio.gather(*(compare(a, b) for a, b in pairs))
    return len(pairs) / (time.perf_counter() - started)


def server_connections(url):
    """Connections the server accepted so far; urllib3's module pool keeps this one open."""
    return orjson.loads(urllib3.request("GET", f"{url}/stats").data)["connections"]


def measure_uncached(url):
    """Comparisons per second, each side best of ROUNDS, alternating; connections per side."""
    sample = texts(COMPARISONS * 2)
    pairs = list(zip(sample[::2], sample[1::2], strict=True))
    client = PhonemeClient(ClientConfig(url=url, pool_size=IN_FLIGHT * 2))
    endpoint = f"{url}/phonemes"

    def shared(text):
        return client.aphonemes(text, "en")

    async def main():
        before = await asyncio.to_thread(server_connections, url)
        await compare_all(shared, pairs)  # fills the server's espeak cache for both sides
        warmup = await asyncio.to_thread(server_connections, url) - before
        rates = {"session_per_request": [], "shared_client": []}
        connections = {"session_per_request": 0, "shared_client": 0}
        for _ in range(ROUNDS):
            for name, fetch in (
                ("session_per_request", lambda t: fetch_with_new_session(endpoint, t)),
                ("shared_client", shared),
            ):
                before = await asyncio.to_thread(server_connections, url)
                rates[name].append(await compare_all(fetch, pairs))
                connections[name] += await asyncio.to_thread(server_connections, url) - before
        await client.aclose()
        runs = {name: (max(rates[name]), connections[name] // ROUNDS) for name in rates}
        return runs, warmup

    return asyncio.run(main())


# --- cached: tier-1 lookups plus rapidfuzz on one core ------------------------------------


def measure_cached(url):
    sample = texts(CACHED_PAIRS * 2, offset=5)
    pairs = list(zip(sample[::2], sample[1::2], strict=True))
    options = {**settings.ROBOTPERF_PHONEMES, "SERVICE_VERSION": VERSION, "POOL_SIZE": 4}
    with override_settings(PHONEME_URL=url, ROBOTPERF_PHONEMES=options):
        try:
            for text_1, text_2 in pairs:
                phoneme_similarity(text_1, text_2)
            calls = [pairs[i % CACHED_PAIRS] for i in range(CACHED_CALLS)]
            started = time.perf_counter()
            for text_1, text_2 in calls:
                phoneme_similarity(text_1, text_2)
            elapsed = time.perf_counter() - started
            assert phoneme_similarity(*pairs[0]).cached
        finally:
            PhonemeCacheEntry.objects.filter(service_version=VERSION).delete()
    return CACHED_CALLS / elapsed


# --- tier-1 memory ------------------------------------------------------------------------


def measure_rss(kind):
    result = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, kind, str(DISTINCT_TEXTS), str(TIER1_CAP)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def report(throughput, warmup_connections, cached, memory):
    old_rate, old_connections = throughput["session_per_request"]
    new_rate, new_connections = throughput["shared_client"]
    ratio = new_rate / old_rate
    lru, unbounded = memory["lru"], memory["dict"]
    bound = TIER1_CAP + RSS_SLACK
    mib = 1024 * 1024
    return "\n".join(
        [
            "## Phoneme similarity\n",
            f"Uncached: {COMPARISONS} comparisons (2 texts each, fetched concurrently), "
            f"{IN_FLIGHT} in flight, reference server with {LATENCY_MS} ms latency.\n",
            "| client | comparisons/s | new TCP connections per run (server count) |",
            "|---|---|---|",
            f"| new `aiohttp.ClientSession` per request (old way) | {old_rate:,.0f} "
            f"| {old_connections:,} |",
            f"| `PhonemeClient.aphonemes`, one session per loop | {new_rate:,.0f} "
            f"| {new_connections:,} |",
            "",
            f"The shared client opened its {warmup_connections} connections in the warm-up run "
            "and reused them in every timed run.\n",
            f"Cached: `phoneme_similarity` on {CACHED_PAIRS:,} pairs already in tier 1, "
            f"{CACHED_CALLS:,} calls in one thread: **{cached:,.0f} pairs/s**.\n",
            f"Tier 1 after {DISTINCT_TEXTS:,} distinct texts (12 phonemes each), "
            f"byte cap {TIER1_CAP // mib} MiB:\n",
            "| cache | entries kept | RSS growth | peak RSS growth |",
            "|---|---|---|---|",
            f"| `BoundedLRU` | {lru['entries']:,} | {lru['growth'] / mib:.1f} MiB "
            f"| {lru['peak_growth'] / mib:.1f} MiB |",
            f"| unbounded dict (old way) | {unbounded['entries']:,} "
            f"| {unbounded['growth'] / mib:.1f} MiB | {unbounded['peak_growth'] / mib:.1f} MiB |",
            "",
            "| target (DESIGN.md section 8) | measured | target | verdict |",
            "|---|---|---|---|",
            f"| uncached throughput vs a session per request | {ratio:.2f}x | >= 2x "
            f"| {verdict(ratio >= 2)} |",
            f"| cached pairs per second, one core | {cached:,.0f} | >= 100,000 "
            f"| {verdict(cached >= 100_000)} |",
            f"| tier-1 peak RSS growth at 1 M texts | {lru['peak_growth'] / mib:.1f} MiB "
            f"| <= cap + {RSS_SLACK // mib} MiB = {bound // mib} MiB "
            f"| {verdict(lru['peak_growth'] <= bound)} |",
            "",
            "How: `manage.py run_phoneme_server --latency-ms "
            f"{LATENCY_MS}` in a subprocess on loopback; both clients run the same comparisons "
            f"in alternating rounds (best of {ROUNDS}), connections counted by the server's "
            "`/stats`; the cached rate goes through the whole service path (normalization, two "
            "tier-1 lookups, hit counting, rapidfuzz); memory is measured in a fresh interpreter "
            "from `/proc/self/statm` and `ru_maxrss`.\n",
        ]
    )
