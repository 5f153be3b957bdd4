"""Per-minute latency histograms of the store's calls: counted in each process's memory, added
up in Redis by every process, read back as the p50 and p99 of each minute.

Buckets are fixed and logarithmic (four per doubling, from 10 µs), so histograms of any number
of processes add up by bucket, and a percentile read back is within 9 % of the true one.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from convstore.keys import KeyLayout

FLOOR = 1e-5
"""Seconds: bucket 0 holds every call faster than this."""
PER_DOUBLING = 4
LAST = 100
"""The last bucket holds every call slower than FLOOR * 2 ** (99 / 4) (about 28 s)."""
KEEP = 3900
"""Seconds a minute's hash lives in Redis: the hour the dashboard shows, and a little more."""
LOAD = "robot-v2.load-conversation"


def bucket(seconds: float) -> int:
    """The bucket of a call that took ``seconds``."""
    if seconds < FLOOR:
        return 0
    return min(int(math.log2(seconds / FLOOR) * PER_DOUBLING) + 1, LAST)


def bucket_seconds(index: int) -> float:
    """A bucket's middle (geometric), the duration a percentile falling in it is given."""
    if index == 0:
        return FLOOR / 2
    return FLOOR * 2 ** ((index - 0.5) / PER_DOUBLING)


def minute_of(unix_time: float) -> int:
    return int(unix_time // 60)


class Histograms:
    """Calls counted per (minute, call, bucket) in this process, until taken for a flush."""

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str, int], int] = {}
        self._lock = threading.Lock()

    def add(self, call: str, seconds: float, unix_time: float) -> None:
        key = (minute_of(unix_time), call, bucket(seconds))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def take(self) -> dict[tuple[int, str, int], int]:
        """What was counted since the last take; counting starts again from nothing."""
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts

    def queue_flush(self, pipe: Any, keys: KeyLayout) -> int:
        """Queue on ``pipe`` the HINCRBYs (and a TTL per minute) that add what was counted to
        Redis; returns how many commands it queued (0: nothing counted)."""
        counts = self.take()
        minutes = set()
        for (minute, call, index), n in counts.items():
            pipe.hincrby(keys.latency(minute), f"{call}:{index}", n)
            minutes.add(minute)
        for minute in minutes:
            pipe.expire(keys.latency(minute), KEEP)
        return len(counts) + len(minutes)


@dataclass(frozen=True, slots=True)
class MinuteLatency:
    """The calls of one minute, every process together."""

    minute: int
    """Unix time // 60."""
    calls: int
    p50: float | None
    """Seconds; None when there was no call."""
    p99: float | None


def percentile(counts: dict[int, int], fraction: float) -> float | None:
    """The ``fraction`` percentile (0..1) of calls counted by bucket, in seconds."""
    total = sum(counts.values())
    if not total:
        return None
    rank = max(math.ceil(fraction * total), 1)
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            return bucket_seconds(index)
    raise AssertionError("unreachable: the ranks add up to the total")


def merge(fields: dict[bytes, bytes], call: str) -> dict[int, int]:
    """The bucket counts of ``call`` in one minute's hash; a field that is not ours is left
    out (the hash is written by every process, and by hand with redis-cli)."""
    prefix = f"{call}:".encode()
    counts: dict[int, int] = {}
    for field, value in fields.items():
        if not field.startswith(prefix):
            continue
        index, n = field[len(prefix) :], value
        if index.isdigit() and n.isdigit() and int(index) <= LAST:
            counts[int(index)] = counts.get(int(index), 0) + int(n)
    return counts


def read_latency(
    client: redis.Redis,
    *,
    now: float,
    minutes: int = 60,
    call: str = LOAD,
    keys: KeyLayout | None = None,
) -> list[MinuteLatency]:
    """The p50 and p99 of ``call`` in each of the last ``minutes`` minutes up to ``now`` (unix
    time), oldest first, read in one round trip. A key of another type counts as no call."""
    keys = keys or KeyLayout()
    last = minute_of(now)
    span = range(last - minutes + 1, last + 1)
    pipe = client.pipeline(transaction=False)
    for minute in span:
        pipe.hgetall(keys.latency(minute))
    replies: Iterable[Any] = pipe.execute(raise_on_error=False)
    result = []
    for minute, reply in zip(span, replies, strict=True):
        counts = merge(reply, call) if isinstance(reply, dict) else {}
        result.append(
            MinuteLatency(
                minute=minute,
                calls=sum(counts.values()),
                p50=percentile(counts, 0.50),
                p99=percentile(counts, 0.99),
            )
        )
    return result
