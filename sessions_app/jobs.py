"""The scheduled jobs for the sessions admin: their beat schedules, their last runs (from
django-celery-results), and the state of a run queued from the dashboard. Read-only."""

import json
from dataclasses import dataclass
from datetime import datetime

from celery.result import AsyncResult
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

RUNS_SHOWN = 5
# What the jobs' reports call their figures (CompactReport, the census, the phoneme eviction).
FIGURES = {
    "scanned": _("scanned"),
    "oversized": _("oversized"),
    "idle": _("idle"),
    "migrated": _("migrated"),
    "migrated_bytes": _("migrated bytes"),
    "docs_split": _("documents split"),
    "legacy_left": _("legacy blobs left"),
    "compacted": _("compacted"),
    "archived_sessions": _("sessions archived"),
    "turns_archived": _("turns archived"),
    "bytes_before": _("before"),
    "bytes_after": _("after"),
    "pruned": _("index entries pruned"),
    "sessions": _("sessions"),
    "legacy": _("legacy blobs"),
    "skipped": _("skipped"),
    "missing": _("missing"),
    "bad_entries": _("bad index entries"),
    "failed": _("failed"),
    "stopped": _("stopped"),
    "evicted": _("evicted"),
    "rows": _("rows"),
}


@dataclass(frozen=True, kw_only=True)
class JobRun:
    status: str
    done_at: datetime | None
    seconds: float | None
    summary: str
    failed: bool


@dataclass(frozen=True, kw_only=True)
class ScheduledJob:
    name: str
    task: str
    schedule: str
    enabled: bool
    last_run_at: datetime | None
    runs: list[JobRun]


def scheduled_jobs(*, runs: int = RUNS_SHOWN) -> list[ScheduledJob]:
    """The beat schedules of our tasks, each with its last runs from django-celery-results."""
    jobs = []
    for task in PeriodicTask.objects.exclude(task__startswith="celery.").order_by("name"):
        results = TaskResult.objects.filter(task_name=task.task).order_by("-date_done")[:runs]
        jobs.append(
            ScheduledJob(
                name=task.name,
                task=task.task,
                schedule=str(task.scheduler) if task.scheduler else "",
                enabled=task.enabled,
                last_run_at=task.last_run_at,
                runs=[_job_run(result) for result in results],
            )
        )
    return jobs


def _job_run(result):
    try:
        value = json.loads(result.result) if result.result else None
    except ValueError:
        value = result.result
    seconds = value.get("seconds") if isinstance(value, dict) else None
    if seconds is None and result.date_created and result.date_done > result.date_created:
        seconds = (result.date_done - result.date_created).total_seconds()
    failed = result.status in ("FAILURE", "REVOKED")
    return JobRun(
        status=result.status,
        done_at=result.date_done,
        seconds=seconds,
        summary=_summary(value, failed),
        failed=failed,
    )


def _summary(value, failed):
    """What a run did, in one line: its report's non-zero figures, or the error."""
    if failed and isinstance(value, dict):
        return f"{value.get('exc_type', 'Error')}: {value.get('exc_message', '')}"[:300]
    if not isinstance(value, dict):
        return "" if value is None else str(value)[:300]
    shown = [
        f"{_label(name)} {_figure(name, figure)}"
        for name, figure in value.items()
        if name != "seconds" and isinstance(figure, int | float | str) and figure not in (0, "")
    ]
    shown += [
        f"{_label(name)} {len(items)}"
        for name, items in value.items()
        if isinstance(items, list) and items
    ]
    return ", ".join(shown)[:300]


def _label(name):
    return str(FIGURES.get(name, name.replace("_", " ")))


def _figure(name, figure):
    """Sizes as the rest of the admin writes them (filesizeformat), other figures as they are."""
    return filesizeformat(figure) if "bytes" in name and isinstance(figure, int) else figure


@dataclass(frozen=True, kw_only=True)
class QueuedTask:
    id: str
    state: str
    """PENDING (queued, or unknown), STARTED, RETRY, SUCCESS, FAILURE..."""
    ready: bool
    run: JobRun | None
    """Its result, once it has finished."""


def queued_task(task_id: str) -> QueuedTask:
    """The state of a task queued from the dashboard, read from the result backend."""
    state = AsyncResult(task_id).state
    result = TaskResult.objects.filter(task_id=task_id).first()
    done = result is not None and result.status in ("SUCCESS", "FAILURE", "REVOKED")
    return QueuedTask(id=task_id, state=state, ready=done, run=_job_run(result) if done else None)
