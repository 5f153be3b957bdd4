"""Prometheus metrics of the phoneme tool: lookups by the tier that answered, the phoneme
service's latency, each process's tier 1, and the tier-2 table read at scrape time.

Label values come from fixed sets (a tier, an outcome), never a text.
"""

import functools
import inspect
import logging
import time

from django.db import DatabaseError
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from phonemes import selectors
from phonemes.client import PhonemeServiceBusy
from phonemes.models import PhonemeCacheCounter

log = logging.getLogger(__name__)

LOOKUPS = Counter(
    "robotperf_phoneme_lookups",
    "Texts looked up, by what answered: tier1_hits (this process's memory), tier2_hits (the "
    "database), misses (the phoneme service was asked).",
    ["result"],
)
UPSTREAM_SECONDS = Histogram(
    "robotperf_phoneme_upstream_seconds",
    "Duration of requests to the phoneme service (retries included), by outcome: ok, error, "
    "busy (no pooled connection came free in the queue time).",
    ["outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Summed over the processes alive: a process that ended takes its tier 1 with it.
TIER1_ENTRIES = Gauge(
    "robotperf_phoneme_tier1_entries",
    "Texts held in the in-process cache (tier 1), summed over live processes.",
    multiprocess_mode="livesum",
)
TIER1_BYTES = Gauge(
    "robotperf_phoneme_tier1_bytes",
    "Approximate bytes of the in-process cache (tier 1), summed over live processes.",
    multiprocess_mode="livesum",
)
# One child per counter name: a cached lookup must stay cheap (100,000 pairs/s on one core).
_lookups = {name: LOOKUPS.labels(name) for name in PhonemeCacheCounter.NAMES}


def count_lookups(name, count):
    """``count`` texts answered by ``name`` (a PhonemeCacheCounter name)."""
    _lookups[name].inc(count)


def tier1_resized(tier1):
    """What this process's tier 1 holds now (after it took or dropped entries)."""
    TIER1_ENTRIES.set(len(tier1))
    TIER1_BYTES.set(tier1.bytes)


def timed_upstream(fetch):
    """``fetch`` (a coroutine function, or a plain one) timed: each call is one lookup asked of
    the phoneme service."""

    def observe(started, error):
        if error is None:
            outcome = "ok"
        else:
            outcome = "busy" if isinstance(error, PhonemeServiceBusy) else "error"
        UPSTREAM_SECONDS.labels(outcome).observe(time.perf_counter() - started)

    if inspect.iscoroutinefunction(fetch):

        @functools.wraps(fetch)
        async def timed_async(*args, **kwargs):
            started = time.perf_counter()
            try:
                result = await fetch(*args, **kwargs)
            except Exception as e:
                observe(started, e)
                raise
            observe(started, None)
            return result

        return timed_async

    @functools.wraps(fetch)
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            result = fetch(*args, **kwargs)
        except Exception as e:
            observe(started, e)
            raise
        observe(started, None)
        return result

    return timed


CACHE_GAUGES = (
    ("robotperf_phoneme_cache_rows", "Rows of the phoneme cache table (tier 2).", "rows"),
    ("robotperf_phoneme_cache_bytes", "Bytes of text and phonemes in tier 2's rows.", "bytes"),
)


class CacheTableCollector:
    """Tier 2's rows and bytes, counted in the database at each scrape (one aggregate query)."""

    def describe(self):
        return [GaugeMetricFamily(name, text) for name, text, _ in CACHE_GAUGES]

    def collect(self):
        try:
            summary = selectors.cache_summary()
        except DatabaseError as e:
            log.warning("phoneme cache not counted for the metrics: %s", e)
            summary = None
        for name, text, field in CACHE_GAUGES:
            family = GaugeMetricFamily(name, text)
            if summary is not None:
                family.add_metric([], getattr(summary, field))
            yield family
