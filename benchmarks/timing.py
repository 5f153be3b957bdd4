"""Timing helpers shared by the benchmarks: medians and p95 of repeated calls, and ratios."""

import itertools
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


def measure_rounds(calls, *, rounds, warmup=1):
    """Time operations in alternation, so a noisy machine slows them all alike.

    ``calls`` maps a name to ``(fn, calls per round)``; returns, per name, each round's samples.
    """
    samples = {name: [] for name in calls}
    clock = time.perf_counter
    for round_ in range(warmup + rounds):
        current = {name: [] for name in calls}
        for name, (fn, times) in calls.items():
            for _ in range(times):
                start = clock()
                fn()
                current[name].append(clock() - start)
        if round_ >= warmup:
            for name, runs in current.items():
                samples[name].append(runs)
    return samples


def measure_together(calls, *, rounds, warmup=1):
    """`measure_rounds`, summarized: a Timing per name over all its rounds."""
    return summary(measure_rounds(calls, rounds=rounds, warmup=warmup))


def summary(rounds):
    """A Timing per name of `measure_rounds`' samples."""
    return {name: summarize(itertools.chain(*runs)) for name, runs in rounds.items()}


def ratio(rounds, name, over):
    """Median over rounds of (median of ``name`` / median of ``over``) within the round."""
    pairs = zip(rounds[name], rounds[over], strict=True)
    return statistics.median(statistics.median(a) / statistics.median(b) for a, b in pairs)


def summarize(samples):
    samples = sorted(samples)
    return Timing(statistics.median(samples), samples[int(0.95 * (len(samples) - 1))], len(samples))


def verdict(ok):
    return "pass" if ok else "**FAIL**"
