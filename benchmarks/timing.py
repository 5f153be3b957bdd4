"""Timing helpers shared by the benchmarks: medians and p95 of repeated calls, and ratios."""

import statistics
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    median: float
    p95: float
    runs: int

    def ms(self):
        return f"{self.median * 1e3:.3f} ms (p95 {self.p95 * 1e3:.3f})"


def measure(fn, *, repeat=200, warmup=10):
    """Call ``fn`` ``warmup`` times untimed, then ``repeat`` times; median and p95 seconds."""
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter
    for _ in range(repeat):
        start = clock()
        fn()
        samples.append(clock() - start)
    return summarize(samples)


def measure_together(calls, *, rounds, warmup=1):
    """Time operations in alternation, so a noisy machine slows them all alike.

    ``calls`` maps a name to ``(fn, calls per round)``; returns a Timing per name.
    """
    samples = {name: [] for name in calls}
    clock = time.perf_counter
    for round_ in range(warmup + rounds):
        for name, (fn, times) in calls.items():
            for _ in range(times):
                start = clock()
                fn()
                elapsed = clock() - start
                if round_ >= warmup:
                    samples[name].append(elapsed)
    return {name: summarize(runs) for name, runs in samples.items()}


def summarize(samples):
    samples = sorted(samples)
    return Timing(statistics.median(samples), samples[int(0.95 * (len(samples) - 1))], len(samples))


def verdict(ok):
    return "pass" if ok else "**FAIL**"
