"""The robot's message cycle, measured: the store's way against the old way, in the same run.

A message: load with a window, append the user's turn, update `record` (a loop count), append
the bot's turn (benchmarks/cycle_work.py). Measured in a closed loop (cycle_closed.py), in an
open loop at Poisson rates (cycle_open.py), and call by call (cycle_parts.py), on copies of the
1 MB and 6 MB demo sessions, which are deleted when the section ends.
"""

import os
import sys
import time
from collections import Counter

from benchmarks import cycle_closed, cycle_http, cycle_open, cycle_parts
from benchmarks.cycle_work import Sessions, Size
from benchmarks.timing import verdict
from sessions_app.store import get_store

SIZES = (Size("1 MB", "1mb", 300, 1_000), Size("6 MB", "6mb", 1_000, 10_000))
OPEN_CONVERSATIONS = 1_000
REDIS_BYTES = {"1 MB": 2.6e6, "6 MB": 15e6}
"""Redis memory per conversation, both ways (split layout + legacy blob), with margin."""
MEMORY_SHARE = 0.5
"""At most this share of the memory available may go to the seeded sessions."""
TARGET_P99, TARGET_RATE, TARGET_RATIO = 0.005, 300, 50


def available_memory():
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    return int(fields["MemAvailable"].split()[0]) * 1024


def open_conversations():
    """How many 1 MB conversations the open loop runs on: 1,000 if they fit in memory."""
    closed = max(cycle_closed.CONCURRENCY)
    budget = MEMORY_SHARE * available_memory() - closed * REDIS_BYTES["6 MB"]
    fit = int(budget // REDIS_BYTES["1 MB"])
    return max(closed, min(OPEN_CONVERSATIONS, fit))


def progress(text):
    print(f"  cycle: {text}", file=sys.stderr, flush=True)


def run():
    sessions = Sessions(get_store())
    conversations = open_conversations()
    counts = {"1 MB": conversations, "6 MB": max(cycle_closed.CONCURRENCY)}
    try:
        seeding = sum(sessions.seed(size, counts[size.label]) for size in SIZES)
        memory = sessions.used_memory()
        progress(f"seeded {counts} conversations in {seeding:.0f} s, {memory / 2**30:.1f} GiB")
        parts = cycle_parts.measure(sessions, SIZES)
        progress("timed one message call by call")
        closed = cycle_closed.measure(sessions, SIZES)
        progress("closed loop done")
        capacity = max(
            closed["async", 1, SIZES[0].label, n]["old"] for n in cycle_closed.CONCURRENCY
        )
        opened = cycle_open.measure(sessions, SIZES[0], conversations, capacity, TARGET_RATE)
        progress("open loop done")
        http = cycle_http.measure(SIZES[0], conversations)
    finally:
        sessions.clean()
    return report(closed, opened, http, parts, conversations, memory, seeding)


def report(closed, opened, http, parts, conversations, memory, seeding):
    return "\n".join(
        [
            "## The robot's message cycle\n",
            "One message as the robot handles it: `load(window=20)`, then `update_state` of "
            "`record` (a loop count changed) with the user's and the bot's turns in the same "
            "write (`append=`), checked against the loaded `_rev` (retried once on "
            "`StaleRevision`): two round trips. Against the old way: GET the blob, "
            "`json.loads`, change the record and append both turns, `json.dumps`, SET. Both on "
            "copies of the demo sessions, in the same run. The call-by-call table also times "
            "the four-call form (each turn appended on its own) for comparison.\n",
            closed_table(closed),
            "",
            open_table(opened, conversations),
            "",
            http_table(http),
            "",
            parts_table(parts),
            "",
            targets_table(closed, opened),
            "",
            notes(conversations, memory, seeding),
        ]
    )


def closed_table(closed):
    columns = cycle_closed.CONCURRENCY
    lines = [
        "Closed loop: each conversation sends its next message when the last is answered; "
        "messages/s of the store's way / the old way (ratio), each conversation its own "
        "session:\n",
        "| mode | size | " + " | ".join(f"{n} conversations" for n in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    names = {"async": "asyncio tasks", "sync": "threads"}
    for (kind, processes), size in ((m, s) for m in cycle_closed.MODES for s in SIZES):
        cells = []
        for n in columns:
            rates = closed[kind, processes, size.label, n]
            store, old = rates["store"], rates["old"]
            cells.append(f"{store:,.0f} / {old:,.1f} ({store / old:.0f}x)")
        mode = f"{names[kind]}, {processes} process{'es' if processes > 1 else ''}"
        lines.append(f"| {mode} | {size.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ms(seconds):
    return "∞" if seconds == float("inf") else f"{seconds * 1e3:.1f}"


def _run_cells(run):
    """p50 / p99 (late) of a run."""
    if run is None:
        return "—"
    return f"{_ms(run.quantile(0.5))} / {_ms(run.quantile(0.99))} ({run.late:,})"


def open_table(opened, conversations):
    columns = [("store", n) for n in cycle_open.PROCESSES] + [("old", 1)]
    by_rate = {column: {run.rate: run for run in opened[column]} for column in columns}
    rates = sorted({rate for runs in by_rate.values() for rate in runs})
    titles = {
        column: f"store, {column[1]} process{'es' if column[1] > 1 else ''}"
        for column in columns
        if column[0] == "store"
    }
    titles["old", 1] = "old way"
    lines = [
        f"Open loop: {conversations:,} conversations of 1 MB, messages arriving at a Poisson "
        "rate, each on a conversation drawn at random, timed from its arrival (the arrival "
        "timer's own lateness, up to 1 ms, counts against the store); the store in one robot "
        "process and in two (each half of the conversations at half the rate), each with "
        "`gc.freeze()` once started (OPERATIONS.md). p50 / p99 in milliseconds, and the "
        f"messages late: failed or unanswered {cycle_open.DRAIN:.0f} s after the last arrival "
        "(counted as slower than any); the old way (one process) is run only at rates under "
        f"{cycle_open.HEADROOM:.0%} of its closed-loop rate:\n",
        "| messages/s | seconds | " + " | ".join(titles[c] for c in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for rate in rates:
        runs = [by_rate[column].get(rate) for column in columns]
        seconds = next(run for run in runs if run).seconds
        cells = " | ".join(_run_cells(run) for run in runs)
        lines.append(f"| {rate:,} | {seconds:g} | {cells} |")
    for column in columns:
        kept = [run.rate for run in opened[column] if run.sustained]
        highest = f"{max(kept):,} messages/s" if kept else "none of the rates run"
        lines.append(
            f"\n{titles[column].capitalize()} sustains p99 <= {cycle_open.BOUND * 1e3:.0f} ms, "
            f"nothing late, at most at: {highest}."
        )
    (unfrozen,) = opened["store", "no freeze"]
    lines.append(
        f"\nThe store in one process without `gc.freeze()`, at {unfrozen.rate:,} messages/s: "
        f"p50 / p99 (late) {_run_cells(unfrozen)}."
    )
    errors = sum((run.errors for runs in opened.values() for run in runs), Counter())
    if errors:
        shown = "; ".join(f"{n:,} x `{text}`" for text, n in errors.most_common(3))
        lines.append(f"\nFailed messages: {shown}.")
    return "\n".join(lines)


def http_table(run):
    lines = [
        f"The same open loop through the example robot over HTTP (`examples/robot/robot.py`, "
        f"one process, one event loop, on the library alone, `gc.freeze()` once started; the "
        f"users an aiohttp client in a process of its own, set up the same way), "
        f"{run.rate:,} messages/s for {run.seconds:g} s, ms:\n",
        "| messages/s | arrived | p50 / p99 (late) |",
        "|---|---|---|",
        f"| {run.rate:,} | {run.arrived:,} | {_run_cells(run)} |",
    ]
    if run.errors:
        shown = "; ".join(f"{n:,} x `{text}`" for text, n in run.errors.most_common(3))
        lines.append(f"\nFailed messages: {shown}.")
    return "\n".join(lines)


def parts_table(parts):
    labels = [size.label for size in SIZES]
    lines = [
        "Where one message's time goes, one conversation, messages one after another (async "
        "store, one event loop): median wall time (CPU time of the process in it, the event "
        "loop's own work), ms:\n",
        "| call | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    ways = (
        ("store", cycle_parts.STORE_PHASES, ""),
        ("four_calls", cycle_parts.FOUR_CALLS_PHASES, "four calls: "),
        ("old", cycle_parts.OLD_PHASES, "old way: "),
    )
    for way, phases, prefix in ways:
        for i, title in enumerate((*phases, "**the whole message**")):
            cells = [
                f"{parts[label][way][i][0] * 1e3:.2f} ({parts[label][way][i][1] * 1e3:.2f})"
                for label in labels
            ]
            lines.append(f"| {prefix}{title} | " + " | ".join(cells) + " |")
    for key, title in (
        ("decode", "in the load: decoding `record` as stored (lz4 + orjson), alone"),
        ("encode", "in `update_state`: encoding `record` (orjson + lz4), alone"),
    ):
        cells = [f"{parts[label]['record'][key] * 1e3:.2f}" for label in labels]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    cells = [f"{parts[label]['record']['bytes']:,}" for label in labels]
    lines.append("| `record` as stored, bytes | " + " | ".join(cells) + " |")
    cells = [f"{parts[label]['ping'] * 1e3:.2f}" for label in labels]
    lines.append("| a PING on redis.asyncio, for scale | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets_table(closed, opened):
    rows = []
    for processes in cycle_open.PROCESSES:
        at = {run.rate: run for run in opened["store", processes]}.get(TARGET_RATE)
        p99 = at.quantile(0.99) if at else float("inf")
        rows.append(
            (
                f"p99 at {TARGET_RATE} messages/s, 1 MB, {processes} robot "
                f"process{'es' if processes > 1 else ''}",
                f"{_ms(p99)} ms",
                f"<= {TARGET_P99 * 1e3:.0f} ms",
                p99 <= TARGET_P99,
            )
        )
    for kind, processes in cycle_closed.MODES:
        best = max(
            closed[kind, processes, "6 MB", n]["store"] / closed[kind, processes, "6 MB", n]["old"]
            for n in cycle_closed.CONCURRENCY
        )
        rows.append(
            (
                f"closed loop, 6 MB, {kind} x{processes}: best ratio over the concurrencies",
                f"{best:.0f}x",
                f">= {TARGET_RATIO}x",
                best >= TARGET_RATIO,
            )
        )
    lines = ["| target | measured | required | verdict |", "|---|---|---|---|"]
    lines += [f"| {name} | {got} | {need} | {verdict(ok)} |" for name, got, need, ok in rows]
    return "\n".join(lines)


def notes(conversations, memory, seeding):
    scaled = (
        ""
        if conversations == OPEN_CONVERSATIONS
        else f" Scaled down from {OPEN_CONVERSATIONS:,} to {conversations:,} 1 MB conversations: "
        f"no more fit in half the memory available."
    )
    closed = ", ".join(
        f"{way} {n:,} at {label}"
        for way, sizes in cycle_closed.MESSAGES.items()
        for label, n in sizes.items()
    )
    return (
        f"How: the demo sessions (`sessions_app.demo.make_session`, 300 steps and 1,000 turns; "
        f"1,000 steps and 10,000 turns) copied under {conversations:,} and "
        f"{max(cycle_closed.CONCURRENCY)} ids, in the store's layout (`seeding.save_many`) and "
        f"as stdlib-json blobs, {memory / 2**30:.1f} GiB in Redis, seeded in {seeding:.0f} s."
        f"{scaled} The stores are the project's (`get_async_store`, `get_store`: codec, keys, "
        "timeouts), in the closed loop on a pool of a connection per conversation (with the "
        "async store's pool of 50, 128 conversations had messages fail after waiting its 5 s "
        "for a connection, reported as Redis unreachable), in the open loop on the project's "
        "pool of 50; "
        "the old way on a redis.asyncio / redis-py client of its own, waiting up to "
        f"{cycle_closed.OLD_TIMEOUT} s for a reply (with redis-py's default 5 s, 128 "
        "conversations of 6 MB in one event loop time out: a reply waits behind the other "
        "conversations' json work). Closed loop: messages per "
        f"run ({closed}; at least one per conversation), after a warm-up that opens the "
        "connections; several processes are forked after seeding and start at a barrier. The "
        "old way's blobs are put back to their demo size before each run (each message grows "
        "them by two turns). Open loop: the issue's rates for "
        f"{cycle_open.SECONDS:.0f} s each (`BENCH_CYCLE_SECONDS`), the others "
        f"({', '.join(map(str, cycle_open.LADDER))}) for a third of that, the same arrivals for "
        f"both ways; a lock per conversation; at most {cycle_open.IN_FLIGHT} messages in hand "
        f"at once; the old way only below {cycle_open.HEADROOM:.0%} of its best closed-loop rate "
        f"(asyncio, one process). Run at {time.strftime('%H:%M UTC', time.gmtime())} on "
        f"{os.cpu_count()} CPUs, Redis on the same machine.\n"
    )
