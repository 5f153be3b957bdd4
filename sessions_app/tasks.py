"""Celery tasks of the conversation store: scheduled compaction, the admin's census.

The service holds a Redis lock for the whole run, so two runs (or a run by hand) never overlap.
"""

import redis
from celery import shared_task
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from locks import LockHeld, LockLost
from sessions_app import census
from sessions_app.actions import count_sessions
from sessions_app.services import CompactionPolicy, compact_oversized
from sessions_app.store import StoreUnavailable

TIME_LIMIT = settings.ROBOTPERF_COMPACTION["TIME_LIMIT"]
LOCK_TIMEOUT = settings.ROBOTPERF_COMPACTION["LOCK_TIMEOUT"]
# A lock that expired while its run goes on would let a second run overlap it.
if LOCK_TIMEOUT <= TIME_LIMIT:
    raise ImproperlyConfigured("COMPACTION_LOCK_TIMEOUT must be longer than COMPACTION_TIME_LIMIT")


# Both jobs: bounded in time, retried on a lost Redis only.
JOB_OPTIONS = {
    "soft_time_limit": TIME_LIMIT * 0.9,
    "time_limit": TIME_LIMIT,
    # A cluster between a node's death and its replica's promotion: CLUSTERDOWN, TRYAGAIN, a
    # slot without a primary (the store's own calls say StoreUnavailable for all of them).
    "autoretry_for": (
        redis.ConnectionError,
        StoreUnavailable,
        redis.exceptions.ClusterError,
        redis.exceptions.TryAgainError,
        redis.exceptions.SlotNotCoveredError,
    ),
    "retry_backoff": True,
    "retry_jitter": False,  # a jittered countdown of 0 can race the failed attempt's RETRY state
    "max_retries": 3,
}


# Idempotent: a run redelivered after a crash repeats nothing harmful.
@shared_task(acks_late=True, **JOB_OPTIONS)
def compact_oversized_sessions():
    """Rebuild the indexes (the repair of any drift), compact the oversized sessions with the
    policy in settings, and re-count the admin's census; the report as a dict."""
    try:
        report = compact_oversized(CompactionPolicy.from_settings(), rebuild=True).as_dict()
    except LockLost as e:
        return {"stopped": str(e)}
    except LockHeld:
        return {"skipped": "already running"}
    # Re-count at once, so the dashboard's totals and filters show what the run changed rather
    # than the census from before it, until the next scheduled count.
    try:
        count_sessions()
    except census.FULL as e:  # Redis full: the compaction is done; the next count catches up
        report["census"] = f"not re-counted: {e}"
    return report


@shared_task(**JOB_OPTIONS)
def count_sessions_for_admin():
    """Recount every session for the admin's dashboard and list filters (census.py).

    Idempotent and safe to overlap: each count builds its own keys and swaps them in at once.
    """
    counted = count_sessions()
    return {"sessions": counted.sessions, "legacy": counted.legacy, "seconds": counted.seconds}
