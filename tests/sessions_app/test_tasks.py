"""The compaction task in a real Celery worker on the Redis broker, its lock, and its schedule.

The worker listens on a queue of this test run's own, so it never takes another run's tasks.
"""

import time
import uuid

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils.module_loading import import_string
from django_celery_beat.models import PeriodicTask

from robotperf.celery import app
from robotperf.locks import exclusive
from sessions_app.models import ArchivedTurn
from sessions_app.tasks import compact_oversized_sessions
from tests.sessions_app.factories import save_session

TASK = "sessions_app.tasks.compact_oversized_sessions"
LOCK = "compact-oversized-sessions"


@pytest.fixture
def queue():
    return f"test-compaction-{uuid.uuid4().hex}"


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
def test_two_concurrent_runs_one_runs_one_skips(store, redis_client, worker, queue):
    # Enough work that the first run still holds the lock when the second starts.
    for n in range(150):
        save_session(store, f"long-{n}", turns=40)
    lock_key = store.keys.lock(LOCK)

    first = compact_oversized_sessions.apply_async(queue=queue)
    deadline = time.monotonic() + 20
    while not redis_client.exists(lock_key) and time.monotonic() < deadline:
        time.sleep(0.002)
    second = compact_oversized_sessions.apply_async(queue=queue)
    results = [second.get(timeout=60), first.get(timeout=60)]

    assert results[0] == {"skipped": "already running"}
    assert results[1]["compacted"] == 150
    assert not redis_client.exists(lock_key)


def test_the_task_is_registered_with_limits_and_late_acks():
    task = app.tasks[TASK]

    assert import_string(TASK) is compact_oversized_sessions
    assert task.acks_late
    assert 0 < task.soft_time_limit < task.time_limit


@pytest.mark.django_db
def test_the_default_schedule_runs_the_task_every_15_minutes():
    entry = PeriodicTask.objects.get(task=TASK)

    assert entry.enabled
    assert (entry.interval.every, entry.interval.period) == (15, "minutes")
    assert entry.task in app.tasks
    assert import_string(entry.task) is compact_oversized_sessions
