"""The store's metrics on /metrics: each call's latency and errors (through convstore's observer
hook), compaction runs, and the admin's census as gauges; real Redis, the scrape as Prometheus
reads it."""

import pytest

from convstore import SessionNotFound
from locks import LockHeld, exclusive
from sessions_app import census
from sessions_app.actions import count_sessions
from sessions_app.services import COMPACTION_LOCK, CompactionPolicy, compact_oversized
from tests.scrape import scrape, value
from tests.sessions_app.factories import save_session

# A scrape also counts the phoneme cache's rows, in the database.
pytestmark = pytest.mark.django_db

LOAD = "robot-v2.load-conversation"
APPEND = "robot-v2.append-turns"
POLICY = CompactionPolicy(max_bytes=10**9, max_turns=20, keep_turns=5, batch_size=5)


def test_each_store_call_is_counted_in_its_latency_histogram(client, store):
    before = scrape(client)
    save_session(store, "c1", turns=3)
    for _ in range(4):
        store.load("c1", window=2)
    after = scrape(client)

    count, bucket = "robotperf_store_call_seconds_count", "robotperf_store_call_seconds_bucket"
    assert value(after, count, call=LOAD) - value(before, count, call=LOAD) == 4
    # Buckets from 100 µs to 1 s: every one of these loads is under a second.
    buckets = {dict(labels)["le"] for name, labels in after if name == bucket}
    assert {"0.0001", "0.001", "0.01", "0.1", "1.0", "+Inf"} <= buckets
    assert (
        value(after, bucket, call=LOAD, le="1.0") - value(before, bucket, call=LOAD, le="1.0") == 4
    )
    assert value(after, "robotperf_store_call_seconds_sum", call=LOAD) > value(
        before, "robotperf_store_call_seconds_sum", call=LOAD
    )


def test_a_failed_call_is_counted_by_its_error_kind(client, store):
    errors = "robotperf_store_call_errors_total"
    before = value(scrape(client), errors, call=APPEND, error="SessionNotFound")
    with pytest.raises(SessionNotFound):
        store.append_turns("nobody", [{"role": "user"}])
    after = scrape(client)

    assert value(after, errors, call=APPEND, error="SessionNotFound") == before + 1
    assert value(after, "robotperf_store_call_seconds_count", call=APPEND) >= 1


@pytest.mark.django_db(transaction=True)
def test_a_compaction_run_counts_sessions_turns_bytes_and_its_duration(client, store):
    save_session(store, "long", turns=30, size=20)
    save_session(store, "short", turns=3)
    before = scrape(client)

    report = compact_oversized(POLICY)
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert (report.compacted, report.turns_archived) == (1, 25)
    assert moved("robotperf_compaction_runs_total", outcome="completed") == 1
    assert moved("robotperf_compaction_sessions_total", action="compacted") == 1
    assert moved("robotperf_compaction_sessions_total", action="archived") == 0
    assert moved("robotperf_compaction_turns_archived_total") == 25
    assert (
        moved("robotperf_compaction_freed_bytes_total") == report.bytes_before - report.bytes_after
    )
    assert report.bytes_before > report.bytes_after
    assert moved("robotperf_compaction_run_seconds_count") == 1


@pytest.mark.django_db(transaction=True)
def test_a_run_refused_by_the_lock_is_counted_as_skipped(client, store):
    runs = "robotperf_compaction_runs_total"
    before = scrape(client)
    with exclusive(COMPACTION_LOCK, timeout=30), pytest.raises(LockHeld):
        compact_oversized(POLICY)
    after = scrape(client)

    assert value(after, runs, outcome="skipped") == value(before, runs, outcome="skipped") + 1
    assert value(after, runs, outcome="completed") == value(before, runs, outcome="completed")


CENSUS = (
    "robotperf_census_sessions",
    "robotperf_census_bytes",
    "robotperf_census_oversized_sessions",
    "robotperf_census_legacy_blobs",
    "robotperf_census_timestamp_seconds",
)


def test_the_census_gauges_are_the_census_in_redis(client, store, settings):
    settings.ROBOTPERF_COMPACTION = {
        **settings.ROBOTPERF_COMPACTION,
        "MAX_TURNS": 20,
        "KEEP_TURNS": 5,
    }
    save_session(store, "big", turns=30)
    save_session(store, "small", turns=2)
    store.client.set(store.keys.legacy("old"), b'{"conversation_id": "old", "history": []}')
    counted = count_sessions()

    samples = scrape(client)

    assert value(samples, "robotperf_census_sessions") == counted.sessions == 2
    assert value(samples, "robotperf_census_bytes") == counted.total_bytes > 0
    assert value(samples, "robotperf_census_oversized_sessions") == 1
    assert value(samples, "robotperf_census_legacy_blobs") == 1
    assert value(samples, "robotperf_census_timestamp_seconds") == pytest.approx(counted.built_at)


@pytest.mark.parametrize("summary", [None, b"not json", b'{"sessions": "many"}'])
def test_without_a_readable_census_the_gauges_have_no_sample(client, store, summary):
    if summary is not None:
        store.client.set(store.keys.census("summary"), summary)
    response = client.get("/metrics")

    assert response.status_code == 200
    text = response.content.decode()
    for name in CENSUS:
        assert f"# TYPE {name} gauge" in text
        assert f"\n{name} " not in text
    # Nothing was counted or changed by the scrape: a page view or the beat job counts.
    assert store.client.get(store.keys.census("summary")) == summary
    assert census.read(store) is None


def test_a_redis_down_leaves_the_census_out_and_the_rest_served(client, sessions_redis):
    server = sessions_redis()
    server.kill()
    response = client.get("/metrics")

    assert response.status_code == 200
    assert b"# TYPE robotperf_census_sessions gauge" in response.content
    assert b"robotperf_store_call_seconds" in response.content
