"""Where one message's time goes: its calls one after another on one conversation, each timed
(wall clock) and charged the process's CPU time it used (the event loop's own work: encoding,
decoding, the store's and redis-py's code); the rest of a call's time is waiting on Redis."""

import asyncio
import statistics
import time

import redis.asyncio

from benchmarks.cycle_closed import url
from benchmarks.cycle_work import four_calls_message, old_message, store_message
from benchmarks.timing import measure as measure_call
from sessions_app.store import get_async_store, get_store

STORE_PHASES = (
    "`load(window=20)`",
    "`update_state` of `record`, `append=` both turns",
)
FOUR_CALLS_PHASES = (
    "`load(window=20)`",
    "`append_turns`, the user's turn",
    "`update_state`, `record`",
    "`append_turns`, the bot's turn",
)
OLD_PHASES = ("GET", "`json.loads` + change + `json.dumps`", "SET")
MESSAGES = {"store": 200, "four_calls": 200, "old": 20}


class Marks:
    """Wall and CPU time at each mark."""

    def __init__(self):
        self.points = [(time.perf_counter(), time.process_time())]

    def __call__(self):
        self.points.append((time.perf_counter(), time.process_time()))

    def spans(self):
        pairs = zip(self.points, self.points[1:], strict=False)
        return [(b[0] - a[0], b[1] - a[1]) for a, b in pairs]


async def _messages(message, count):
    """Per phase, then for the whole message: (median wall, median CPU) seconds."""
    await message(lambda: None)  # warm-up: connections, the bot_config cache
    samples = []
    for _ in range(count):
        marks = Marks()
        await message(marks)
        spans = marks.spans()
        whole = (marks.points[-1][0] - marks.points[0][0], marks.points[-1][1] - marks.points[0][1])
        samples.append([*spans, whole])
    return [
        (statistics.median(s[i][0] for s in samples), statistics.median(s[i][1] for s in samples))
        for i in range(len(samples[0]))
    ]


async def _measure(size):
    turns = (size.user_turn(), size.bot_turn())
    store, client = get_async_store(), redis.asyncio.Redis.from_url(url(), max_connections=1)
    legacy = get_store().keys.legacy(size.legacy_cid(0))
    try:
        figures = {
            "store": await _messages(
                lambda mark: store_message(store, size.cid(0), size, turns, mark),
                MESSAGES["store"],
            ),
            "four_calls": await _messages(
                lambda mark: four_calls_message(store, size.cid(0), size, turns, mark),
                MESSAGES["four_calls"],
            ),
            "old": await _messages(
                lambda mark: old_message(client, legacy, size, turns, mark), MESSAGES["old"]
            ),
        }
        pings = []
        for _ in range(200):
            started = time.perf_counter()
            await client.ping()
            pings.append(time.perf_counter() - started)
        figures["ping"] = statistics.median(pings)
        return figures
    finally:
        await store.aclose()
        await client.aclose()


def record_codec(store, cid):
    """Median seconds to decode and to encode the conversation's `record` as stored."""
    record = store.load(cid, window=0)["record"]
    raw = store.codec.encode(record)
    return {
        "decode": measure_call(lambda: store.codec.decode(raw), repeat=100).median,
        "encode": measure_call(lambda: store.codec.encode(record), repeat=100).median,
        "bytes": len(raw),
    }


def measure(sessions, sizes):
    """{size label: {"store": [(wall, cpu)...], "old": [...], "ping": seconds, "record": ...}}."""
    figures = {}
    for size in sizes:
        sessions.reset(size, 1)
        figures[size.label] = asyncio.run(_measure(size))
        figures[size.label]["record"] = record_codec(sessions.store, size.cid(0))
    return figures
