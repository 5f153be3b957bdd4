"""The Celery side of the dashboard: which workers answer and what each runs, the default
queue's length in the broker, and when beat last sent a job. Read-only, each part bounded by
one timeout and asked at the same time, so the panel never takes longer than that timeout."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from celery import current_app as app
from django.conf import settings
from django.db.models import Max
from django_celery_beat.models import PeriodicTask


@dataclass(frozen=True, kw_only=True)
class RunningTask:
    name: str
    id: str
    started: datetime | None


@dataclass(frozen=True, kw_only=True)
class Worker:
    name: str
    running: list[RunningTask]


@dataclass(frozen=True, kw_only=True)
class Workers:
    answered: list[Worker] | None
    """The workers that answered within the timeout; None when the broker could not be asked."""
    queue: str
    queued: int | None
    """Messages waiting in the default queue; None when the broker could not be asked."""
    broker_error: str
    """Why the broker could not be asked (its exception type and message), or ""."""
    last_beat: datetime | None
    """When beat last sent a scheduled job (django-celery-beat's last_run_at)."""
    timeout: float


def workers_status() -> Workers:
    """Ask the workers (a broadcast of ``active``) and the broker (the queue's length) at once,
    each within ``ADMIN_WORKERS_TIMEOUT`` seconds."""
    timeout = settings.ADMIN_WORKERS_TIMEOUT
    queue = app.conf.task_default_queue
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="admin-workers") as pool:
        active = pool.submit(_active, timeout)
        length = pool.submit(_queue_length, queue, timeout)
        last_beat = PeriodicTask.objects.aggregate(last=Max("last_run_at"))["last"]
        answered, active_error = active.result()
        queued, queue_error = length.result()
    return Workers(
        answered=answered,
        queue=queue,
        queued=queued,
        broker_error=queue_error or active_error,
        last_beat=last_beat,
        timeout=timeout,
    )


def _connection(timeout):
    # One attempt, bounded: an unreachable broker is said at once instead of retried.
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "max_retries": 0}
    connection = app.connection_for_write(connect_timeout=timeout, transport_options=options)
    connection.ensure_connection(max_retries=0, timeout=timeout)
    return connection


def _active(timeout):
    try:
        with _connection(timeout) as connection:
            replies = app.control.inspect(timeout=timeout, connection=connection).active()
    except Exception as e:  # whatever the transport raises: the panel says it, the page goes on
        return None, _error(e)
    return [_worker(name, tasks) for name, tasks in sorted((replies or {}).items())], ""


def _worker(name, tasks):
    running = [
        RunningTask(
            name=task.get("name") or task.get("type") or "",
            id=task.get("id", ""),
            started=_time(task.get("time_start")),
        )
        for task in tasks or []
        if isinstance(task, dict)
    ]
    return Worker(name=name, running=running)


def _time(unix_time):
    return datetime.fromtimestamp(unix_time, UTC) if isinstance(unix_time, int | float) else None


def _queue_length(queue, timeout):
    try:
        with _connection(timeout) as connection:
            channel = connection.default_channel
            try:
                return channel.queue_declare(queue=queue, passive=True).message_count, ""
            except connection.channel_errors:  # not declared yet: nothing was ever queued
                return 0, ""
    except Exception as e:  # as above
        return None, _error(e)


def _error(error):
    return f"{type(error).__name__}: {error}"[:300]
