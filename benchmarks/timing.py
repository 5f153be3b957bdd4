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
    samples.sort()
    return Timing(statistics.median(samples), samples[int(0.95 * (len(samples) - 1))], repeat)


def verdict(ok):
    return "pass" if ok else "**FAIL**"
