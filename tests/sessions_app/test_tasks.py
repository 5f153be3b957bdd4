"""The compaction task in a real Celery worker on the Redis broker: lock, retry, schedule.

The worker listens on a queue of this test run's own, so it never takes another run's tasks.
"""

import time

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from django.utils.module_loading import import_string
from django_celery_beat.models import PeriodicTask

from locks import exclusive
from robotperf.celery import app
from sessions_app import tasks
from sessions_app.models import ArchivedTurn
from sessions_app.store import StoreUnavailable
from sessions_app.tasks import compact_oversized_sessions
from tests.sessions_app.factories import save_session

TASK = "sessions_app.tasks.compact_oversized_sessions"
LOCK = "compact-oversized-sessions"


@pytest.fixture
def queue(celery_queue):
    return celery_queue


@pytest.fixture
def worker(queue):
    with start_worker(
        app,
        pool="threads",
        concurrency=2,
        queues=[queue],
        perform_ping_check=False,
        shutdown_timeout=30,
    ) as running:
        yield running


@pytest.fixture
def serial_worker(queue):
    """A worker of one thread. A retry's countdown may be 0 (full jitter): on a second thread
    it can finish before the failed attempt records RETRY, which then overwrites SUCCESS."""
    with start_worker(
        app, pool="threads", concurrency=1, queues=[queue], perform_ping_check=False
    ) as running:
        yield running


@pytest.fixture
def compaction_settings(settings):
    settings.ROBOTPERF_COMPACTION = {
        **settings.ROBOTPERF_COMPACTION,
        "MAX_TURNS": 20,
        "KEEP_TURNS": 5,
        "BATCH_SIZE": 5,
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("compaction_settings")
def test_the_task_compacts_in_a_worker_and_returns_the_report(store, worker, queue):
    save_session(store, "long", turns=30)
    save_session(store, "short", turns=3)

    report = compact_oversized_sessions.apply_async(queue=queue).get(timeout=30)

    assert report["scanned"] == 2
    assert report["compacted"] == 1
    assert report["turns_archived"] == 25
    assert store.client.llen(store.keys.turns("long")) == 5
    assert ArchivedTurn.objects.filter(conversation_id="long").count() == 25


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("compaction_settings")
def test_the_task_finds_a_session_that_its_failed_index_update_left_out(
    store, redis_client, worker, queue
):
    """A write whose index commands failed (drift) is in no index: the scheduled run's rebuild
    finds it, and compacts it in the same run."""
    save_session(store, "long", turns=30)
    redis_client.delete(store.keys.index_bytes, store.keys.index_seen)

    report = compact_oversized_sessions.apply_async(queue=queue).get(timeout=30)

    assert report["indexes"] == {"indexed": 1, "missing": 1, "pruned": 0}
    assert report["compacted"] == 1
    assert store.client.llen(store.keys.turns("long")) == 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("compaction_settings")
def test_a_run_while_another_holds_the_lock_skips(store, worker, queue):
    save_session(store, "long", turns=30)

    with exclusive(LOCK, timeout=60) as acquired:
        assert acquired
        skipped = compact_oversized_sessions.apply_async(queue=queue).get(timeout=30)

    assert skipped == {"skipped": "already running"}
    assert store.client.llen(store.keys.turns("long")) == 30
    ran = compact_oversized_sessions.apply_async(queue=queue).get(timeout=30)
    assert ran["compacted"] == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("compaction_settings")
def test_two_concurrent_runs_one_runs_one_skips(store, redis_client, worker, queue, settings):
    # Enough work that the first run still holds the lock when the second starts.
    for n in range(150):
        save_session(store, f"long-{n}", turns=40)
    lock_key = settings.ROBOTPERF_LOCKS["KEY_PREFIX"] + LOCK

    first = compact_oversized_sessions.apply_async(queue=queue)
    deadline = time.monotonic() + 20
    while not redis_client.exists(lock_key) and time.monotonic() < deadline:
        time.sleep(0.002)
    second = compact_oversized_sessions.apply_async(queue=queue)
    results = [second.get(timeout=60), first.get(timeout=60)]

    assert results[0] == {"skipped": "already running"}
    assert results[1]["compacted"] == 150
    assert not redis_client.exists(lock_key)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("compaction_settings")
def test_the_task_is_registered_with_limits_and_late_acks(store, worker, queue):
    task = app.tasks[TASK]

    assert import_string(TASK) is compact_oversized_sessions
    assert task.acks_late
    assert 0 < task.soft_time_limit < task.time_limit
    # What the schedule sends, by name, runs the compaction.
    save_session(store, "long", turns=30)
    report = app.send_task(TASK, queue=queue).get(timeout=30)
    assert (report["compacted"], report["turns_archived"]) == (1, 25)
    assert store.client.llen(store.keys.turns("long")) == 5


@pytest.fixture
def flaky_compaction(monkeypatch):
    """The task's service raises ``error`` on its first call; returns the retry count of each
    call (the in-thread worker sees the patched module attribute)."""
    retries = []
    compact = tasks.compact_oversized

    def install(error):
        def compact_once_failing(policy, **options):
            retries.append(compact_oversized_sessions.request.retries)
            if len(retries) == 1:
                raise error
            return compact(policy, **options)

        monkeypatch.setattr(tasks, "compact_oversized", compact_once_failing)
        return retries

    return install


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("compaction_settings")
@pytest.mark.parametrize(
    "error",
    [
        redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        StoreUnavailable("Redis at redis://127.0.0.1:6379/0 is unreachable"),
    ],
    ids=["connection-error", "store-unavailable"],
)
def test_a_transient_redis_error_is_retried_and_the_retry_compacts(
    store, serial_worker, queue, flaky_compaction, error
):
    retries = flaky_compaction(error)
    save_session(store, "long", turns=30)

    result = compact_oversized_sessions.apply_async(queue=queue)
    report = result.get(timeout=30)

    assert retries == [0, 1]
    assert (report["compacted"], report["turns_archived"]) == (1, 25)
    assert store.client.llen(store.keys.turns("long")) == 5
    assert ArchivedTurn.objects.filter(conversation_id="long").count() == 25
    assert result.state == "SUCCESS"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("compaction_settings")
def test_an_error_that_is_not_transient_fails_without_a_retry(
    store, worker, queue, flaky_compaction
):
    retries = flaky_compaction(ValueError("keep_turns must be at least 1"))
    save_session(store, "long", turns=30)

    result = compact_oversized_sessions.apply_async(queue=queue)

    with pytest.raises(ValueError, match="keep_turns must be at least 1"):
        result.get(timeout=30)
    assert retries == [0]
    assert store.client.llen(store.keys.turns("long")) == 30


@pytest.mark.django_db
def test_the_default_schedule_runs_the_task_every_15_minutes():
    entry = PeriodicTask.objects.get(task=TASK)

    assert entry.enabled
    assert (entry.interval.every, entry.interval.period) == (15, "minutes")
    assert entry.task in app.tasks
    assert import_string(entry.task) is compact_oversized_sessions
