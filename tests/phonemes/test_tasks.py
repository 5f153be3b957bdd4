"""The eviction task in a real Celery worker (in-thread, Redis broker): its effects, its lock,
its retry on a transient Redis error, and the daily schedule the data migration creates."""

import importlib

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from django.apps import apps as django_apps
from django_celery_beat.models import PeriodicTask

from locks import exclusive
from phonemes import tasks as phonemes_tasks
from phonemes.services import evict_stale
from phonemes.tasks import evict_stale_phoneme_cache
from robotperf.celery import app as celery_app
from tests.phonemes.test_services import make_entry, remaining

schedule_migration = importlib.import_module("phonemes.migrations.0002_daily_eviction_schedule")


@pytest.fixture
def queue(celery_queue):
    """A queue of this test's own, so no other worker on the broker takes its tasks."""
    return celery_queue


@pytest.fixture
def worker(transactional_db, queue):
    with start_worker(
        celery_app, pool="threads", concurrency=2, perform_ping_check=False, queues=[queue]
    ) as running:
        yield running


@pytest.fixture
def serial_worker(transactional_db, queue):
    """A worker of one thread. A retry's countdown may be 0 (full jitter): on a second thread
    it can finish before the failed attempt records RETRY, which then overwrites SUCCESS."""
    with start_worker(
        celery_app, pool="threads", concurrency=1, perform_ping_check=False, queues=[queue]
    ) as running:
        yield running


@pytest.fixture
def limits(settings):
    settings.ROBOTPERF_PHONEMES = {
        **settings.ROBOTPERF_PHONEMES,
        "EVICT_OLDER_THAN_DAYS": 30,
        "EVICT_MAX_ROWS": 2,
        "EVICT_BATCH": 2,
    }


def run(queue):
    return evict_stale_phoneme_cache.apply_async(queue=queue).get(timeout=20)


def test_evicts_in_a_worker_and_a_second_run_finds_nothing(worker, queue, limits):
    for days in (1, 2, 3, 40):
        make_entry(f"t{days}", days_ago=days)
    first = run(queue)
    assert (first["status"], first["expired_rows"], first["lru_rows"]) == ("done", 1, 1)
    assert remaining() == ["t1", "t2"]
    second = run(queue)
    assert (second["status"], second["expired_rows"], second["lru_rows"]) == ("done", 0, 0)
    assert remaining() == ["t1", "t2"]


def test_a_run_while_another_holds_the_lock_skips(worker, queue, limits):
    make_entry("stale", days_ago=400)
    with exclusive("evict-phoneme-cache", timeout=60) as acquired:
        assert acquired
        results = [evict_stale_phoneme_cache.apply_async(queue=queue) for _ in range(2)]
        assert [r.get(timeout=20) for r in results] == [{"status": "skipped: already running"}] * 2
        assert remaining() == ["stale"]
    assert run(queue)["expired_rows"] == 1
    assert remaining() == []


def test_task_declares_its_limits_and_its_body_runs_by_its_name(worker, queue, limits):
    assert evict_stale_phoneme_cache.acks_late is True
    assert 0 < evict_stale_phoneme_cache.soft_time_limit < evict_stale_phoneme_cache.time_limit
    assert redis.ConnectionError in evict_stale_phoneme_cache.autoretry_for
    for days in (1, 2, 3, 4, 50):
        make_entry(f"t{days}", days_ago=days)
    result = celery_app.send_task(evict_stale_phoneme_cache.name, queue=queue).get(timeout=20)
    assert (result["expired_rows"], result["lru_rows"], result["remaining_rows"]) == (1, 2, 2)
    assert remaining() == ["t1", "t2"]


@pytest.fixture
def flaky_eviction(monkeypatch):
    """The task's service raises ``error`` on its first call; returns the retry count of each
    call (the worker thread sees the patched module attribute)."""
    retries = []

    def install(error):
        def evict_once_failing(**limits):
            retries.append(evict_stale_phoneme_cache.request.retries)
            if len(retries) == 1:
                raise error
            return evict_stale(**limits)

        monkeypatch.setattr(phonemes_tasks, "evict_stale", evict_once_failing)
        return retries

    return install


def test_a_transient_redis_error_is_retried_and_the_retry_evicts(
    serial_worker, queue, limits, flaky_eviction
):
    retries = flaky_eviction(redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379"))
    make_entry("stale", days_ago=400)
    make_entry("fresh", days_ago=1)
    result = evict_stale_phoneme_cache.apply_async(queue=queue)
    report = result.get(timeout=30)
    assert retries == [0, 1]
    assert (report["status"], report["expired_rows"]) == ("done", 1)
    assert remaining() == ["fresh"]
    assert result.state == "SUCCESS"


def test_an_error_that_is_not_transient_fails_without_a_retry(
    worker, queue, limits, flaky_eviction
):
    retries = flaky_eviction(ValueError("max_rows must be >= 0"))
    make_entry("stale", days_ago=400)
    result = evict_stale_phoneme_cache.apply_async(queue=queue)
    with pytest.raises(ValueError, match="max_rows must be"):
        result.get(timeout=20)
    assert retries == [0]
    assert remaining() == ["stale"]


@pytest.mark.django_db
def test_the_daily_schedule_is_created_once():
    schedule_migration.create_schedule(django_apps, None)
    schedule_migration.create_schedule(django_apps, None)
    task = PeriodicTask.objects.get(task="phonemes.tasks.evict_stale_phoneme_cache")
    assert task.enabled
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "3", "*")
