"""Prometheus metrics of the conversation store: every store call (through convstore's observer
hook), the compaction runs, and the admin's census as gauges read at scrape time.

The library knows nothing of Prometheus: `observe_call` is added as an observer when the app is
ready. Label values come from small fixed sets (a call's span name, an exception's class name,
an outcome), never a conversation id.
"""

import logging
import time
from contextlib import contextmanager

import redis
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from convstore.exceptions import StoreError
from convstore.observe import CallRecord
from locks import LockHeld, LockLost
from sessions_app import census
from sessions_app.store import get_store

log = logging.getLogger(__name__)

STORE_CALL_SECONDS = Histogram(
    "robotperf_store_call_seconds",
    "Duration of conversation store calls, by call (the span's name).",
    ["call"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
STORE_CALL_ERRORS = Counter(
    "robotperf_store_call_errors",
    "Store calls that raised, by call and error class (StaleRevision, StoreUnavailable, ...).",
    ["call", "error"],
)
COMPACTION_RUNS = Counter(
    "robotperf_compaction_runs",
    "Compaction runs (the scheduled job and compact_sessions), by outcome: completed, skipped "
    "(another run held the lock), stopped (its lock was lost), failed.",
    ["outcome"],
)
COMPACTION_SESSIONS = Counter(
    "robotperf_compaction_sessions",
    "Sessions compaction changed, by action: compacted (trimmed or re-encoded), archived whole.",
    ["action"],
)
COMPACTION_TURNS_ARCHIVED = Counter(
    "robotperf_compaction_turns_archived", "Turns compaction moved from Redis to the database."
)
COMPACTION_BYTES_FREED = Counter(
    "robotperf_compaction_freed_bytes", "Bytes of Redis compaction freed (before minus after)."
)
COMPACTION_SECONDS = Histogram(
    "robotperf_compaction_run_seconds",
    "Duration of compaction runs that completed, the index rebuild included.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)

# One child per call name: labels() takes a lock and builds a key, on every store call otherwise.
_seconds_of = {}


def observe_call(record: CallRecord) -> None:
    """The store's observer: the call's duration, and its error when it raised."""
    seconds = _seconds_of.get(record.call)
    if seconds is None:
        seconds = _seconds_of[record.call] = STORE_CALL_SECONDS.labels(record.call)
    seconds.observe(record.seconds)
    if record.error is not None:
        STORE_CALL_ERRORS.labels(record.call, record.error).inc()


@contextmanager
def compaction_run():
    """Count one compaction run by its outcome; the block calls what it is given with the run's
    report once the run is done."""
    started = time.monotonic()
    reports = []
    try:
        yield reports.append
    except LockHeld:
        COMPACTION_RUNS.labels("skipped").inc()
        raise
    except LockLost:
        COMPACTION_RUNS.labels("stopped").inc()
        raise
    except BaseException:
        COMPACTION_RUNS.labels("failed").inc()
        raise
    COMPACTION_RUNS.labels("completed").inc()
    COMPACTION_SECONDS.observe(time.monotonic() - started)
    for report in reports:
        COMPACTION_SESSIONS.labels("compacted").inc(report.compacted)
        COMPACTION_SESSIONS.labels("archived").inc(report.archived_sessions)
        COMPACTION_TURNS_ARCHIVED.inc(report.turns_archived)
        COMPACTION_BYTES_FREED.inc(max(0, report.bytes_before - report.bytes_after))


CENSUS_GAUGES = (
    ("robotperf_census_sessions", "Sessions in Redis, at the last census.", "sessions"),
    (
        "robotperf_census_bytes",
        "Bytes of every session in Redis, at the last census.",
        "total_bytes",
    ),
    ("robotperf_census_oversized_sessions", "Oversized sessions, at the last census.", "oversized"),
    (
        "robotperf_census_legacy_blobs",
        "Legacy blobs left to migrate, at the last census.",
        "legacy",
    ),
    ("robotperf_census_timestamp_seconds", "When the last census was counted.", "built_at"),
)


class CensusCollector:
    """The admin's census (census.py) as gauges: its summary, read from Redis at each scrape.

    One MGET per scrape, never a scan: the beat job counts every 5 minutes. Without a census (or
    with Redis unreachable), the gauges are declared with no sample.
    """

    def describe(self):
        return [GaugeMetricFamily(name, text) for name, text, _ in CENSUS_GAUGES]

    def collect(self):
        try:
            counted = census.read(get_store())
        except (redis.RedisError, StoreError) as e:
            log.warning("census not read for the metrics: %s", e)
            counted = None
        for name, text, field in CENSUS_GAUGES:
            family = GaugeMetricFamily(name, text)
            if counted is not None:
                family.add_metric([], getattr(counted, field))
            yield family
