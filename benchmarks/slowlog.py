"""What the slow-call log costs a load when nothing is slow: the same load of a 1 MB session
with the log off and on (threshold 60 s), in alternating rounds of one run; and, since that
difference moves with a shared machine's noise, the log's own work per call, timed on a
call that does no I/O (a traced block with the load's phases), as a share of the load.

With the log on, every call is timed phase by phase, counted in the process's latency
histogram, and compared with the threshold; only a slow call would be queued for its writer.
"""

import statistics
import time

from benchmarks.timing import summarize, verdict
from convstore import add_observer, disable_slow_log, remove_observer
from convstore.slowlog import SlowCallLog
from convstore.tracing import traced
from sessions_app.demo import make_session
from sessions_app.store import get_store

CID = "bench-slowlog-1mb"
WINDOW = 20
ROUNDS, CALLS = 200, 20
TARGET = 0.02
"""The log may add at most 2 % to a load when nothing is slow."""


def run():
    disable_slow_log()  # the process's own log (settings): this section turns it on and off
    store = get_store()
    session = make_session(0, steps=300, turns=1_000, prefix="bench-")
    session["conversation_id"] = CID
    store.save(session)
    slow_log = SlowCallLog(store.client, threshold=60, keys=store.keys)
    try:
        timings = _alternate(store, slow_log)
        own = _own_work(slow_log)
        every = _every_call_logged(store)
    finally:
        slow_log.close()
        store.delete(CID)
    return _report(timings, own, every)


def _alternate(store, slow_log):
    """Per round: CALLS loads with the log off and CALLS with it on, which first taking turns
    (the second of two batches runs warmer); each round's samples."""
    rounds = {"off": [], "on": []}
    clock = time.perf_counter
    for round_ in range(ROUNDS + 1):
        for name in ("off", "on") if round_ % 2 else ("on", "off"):
            if name == "on":
                add_observer(slow_log)
            samples = []
            for _ in range(CALLS):
                start = clock()
                store.load(CID, window=WINDOW)
                samples.append(clock() - start)
            if name == "on":
                remove_observer(slow_log)
            if round_:  # the first round warms up
                rounds[name].append(samples)
    return rounds


def _traced_call():
    call = traced("robot-v2.load-conversation", CID, WINDOW)
    with call as phase:
        phase("redis")
        phase("decode")
        call.size = b"1048576"
        phase("assemble")


def _own_work(slow_log, *, rounds=50, calls=2000):
    """Seconds the log adds to one call: a traced block with and without it, alternating."""
    added = []
    clock = time.perf_counter
    for _ in range(rounds):
        start = clock()
        for _ in range(calls):
            _traced_call()
        off = clock() - start
        add_observer(slow_log)
        start = clock()
        for _ in range(calls):
            _traced_call()
        on = clock() - start
        remove_observer(slow_log)
        added.append((on - off) / calls)
    return statistics.median(added)


def _every_call_logged(store):
    """A load that is slow (threshold 0): what queueing its entry adds, for comparison."""
    slow_log = SlowCallLog(store.client, threshold=0, keys=store.keys, maxlen=1000)
    add_observer(slow_log)
    samples = []
    try:
        for _ in range(1000):
            start = time.perf_counter()
            store.load(CID, window=WINDOW)
            samples.append(time.perf_counter() - start)
            if len(samples) % 200 == 0:
                slow_log.flush()  # keep the queue from filling: each entry is really queued
    finally:
        remove_observer(slow_log)
        slow_log.close()
        store.client.delete(store.keys.slow_log)
    return summarize(samples)


def _report(rounds, own, every):
    off = summarize(sample for samples in rounds["off"] for sample in samples)
    on = summarize(sample for samples in rounds["on"] for sample in samples)
    pairs = zip(rounds["on"], rounds["off"], strict=True)
    paired = statistics.median(statistics.median(a) / statistics.median(b) for a, b in pairs) - 1
    cost = own / off.median
    return "\n".join(
        [
            "## Slow-call log\n",
            "| load, window 20, 1 MB session | median | p95 |",
            "|---|---|---|",
            f"| log off | {off.ms()} | |",
            f"| log on, nothing slow (threshold 60 s) | {on.ms()} | |",
            f"| log on, every call logged (threshold 0) | {every.ms()} | |",
            "",
            f"The log's own work per call, nothing slow: {own * 1e6:.1f} µs, {cost * 100:.2f} % "
            f"of the load's median (target < {TARGET * 100:.0f} %): {verdict(cost < TARGET)}. "
            f"Loads with the log on against off, end to end: {on.median / off.median - 1:+.2%} "
            f"(medians), {paired:+.2%} (median of the rounds' ratios), which takes in more: "
            "the machine's noise, and the garbage collector, which the log's few objects per "
            "call make run a little more often during loads.\n",
            "How: one 1 MB demo session (300 steps, 1,000 turns); each round loads it "
            f"{CALLS} times with no observer and {CALLS} times with the slow-call log "
            "observing (which first alternates between rounds; with it the phases are timed, "
            "the call counted in the minute's histogram and compared with the threshold), "
            "while the writer thread runs; the log's own work is the difference between 2,000 "
            "traced blocks with the load's phases and no I/O, with and without the log (median "
            "of 50 rounds). `python -m benchmarks slowlog`.\n",
        ]
    ).replace(" | |", " |")
