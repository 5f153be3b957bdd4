"""What /metrics costs a store call: a windowed load with the metrics observer on and off, in
alternation, and the observer alone (in this process's registry, and in multiprocess mode).
"""

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import timeit

from benchmarks.timing import ratio as ratios
from benchmarks.timing import summary
from convstore.observe import CallRecord, add_observer, remove_observer
from convstore.tracing import traced
from sessions_app.metrics import observe_call

ROUNDS, CALLS = 100, 20
RECORD = CallRecord(
    "robot-v2.load-conversation", "bench", 0.0005, None, (("redis", 3e-4), ("decode", 2e-4))
)
OBSERVER_ALONE = f"""
import time
import timeit
from convstore.observe import CallRecord
from sessions_app.metrics import observe_call
record = CallRecord(*{dataclasses.astuple(RECORD)!r})
for _ in range(1000):
    observe_call(record)
started = time.perf_counter()
for _ in range(100_000):
    observe_call(record)
print((time.perf_counter() - started) / 100_000)
"""


def measure(store, cid, window):
    """Per round: median seconds of ``CALLS`` loads with the observer off, then on."""
    load = lambda: store.load(cid, window=window)  # noqa: E731
    rounds = {"off": [], "on": []}
    remove_observer(observe_call)
    try:
        for n in range(ROUNDS + 1):
            # Each goes first in every other round, so neither is favoured by its place.
            for name in ("off", "on") if n % 2 else ("on", "off"):
                remove_observer(observe_call)
                if name == "on":
                    add_observer(observe_call)
                rounds[name].append(_timed(load))
    finally:
        remove_observer(observe_call)
        add_observer(observe_call)
    return {name: runs[1:] for name, runs in rounds.items()}  # the first round warms up


def _timed(fn):
    samples = []
    for _ in range(CALLS):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def traced_call():
    """Seconds of an empty store call's tracing (a span, three phases; no SDK), without and with
    the metrics observer: the hook's whole cost, the phases' timing included, without Redis's
    noise around it."""

    def call():
        with traced(RECORD.call, "bench") as phase:
            phase("redis")
            phase("decode")
            phase("assemble")

    costs = {}
    for name in ("off", "on"):
        remove_observer(observe_call)
        if name == "on":
            add_observer(observe_call)
        costs[name] = min(timeit.repeat(call, number=20_000, repeat=5)) / 20_000
    return costs


def observer_alone():
    """Seconds per `observe_call`: in this process's registry, and in multiprocess mode (a
    process of its own, writing into a temporary PROMETHEUS_MULTIPROC_DIR)."""
    started = time.perf_counter()
    for _ in range(100_000):
        observe_call(RECORD)
    plain = (time.perf_counter() - started) / 100_000
    with tempfile.TemporaryDirectory() as directory:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
        code = "import django; django.setup()\n" + OBSERVER_ALONE
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
    return plain, float(done.stdout)


def report(label, rounds, alone, hook):
    timings = summary(rounds)
    off, on, ratio = timings["off"], timings["on"], ratios(rounds, "on", "off")
    plain, multiprocess = alone
    return "\n".join(
        [
            "### What the metrics cost a store call\n",
            f"`store.load(window=20)` of the {label} session, the metrics observer "
            "(`sessions_app.metrics.observe_call`, added by the app at start) off and on, "
            f"in alternation ({ROUNDS} rounds of {CALLS} loads each):\n",
            "| observer | load |",
            "|---|---|",
            f"| off | {off.ms()} |",
            f"| on | {on.ms()} |",
            f"| on / off (median of the rounds' ratios) | {ratio:.3f} |",
            "",
            "Measured without Redis, an empty traced call (a span and three phases, no SDK) "
            f"costs {hook['off'] * 1e6:.2f} µs without the observer and "
            f"{hook['on'] * 1e6:.2f} µs with it: {(hook['on'] - hook['off']) * 1e6:.2f} µs a "
            f"call, {(hook['on'] - hook['off']) / off.median:.1%} of the load above. Of that, "
            f"the observer itself takes {plain * 1e6:.2f} µs in a process's own registry "
            f"({multiprocess * 1e6:.2f} µs in multiprocess mode, `make serve`: values in "
            "memory-mapped files); the rest is the call timing its phases for it. The loads "
            f"above differ by {(on.median - off.median) * 1e6:.0f} µs.\n",
        ]
    )
