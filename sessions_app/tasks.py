"""Celery tasks of the conversation store: scheduled compaction.

Each task calls one service under a Redis lock, so two runs never overlap.
"""

import redis
from celery import shared_task
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from robotperf.locks import exclusive
from sessions_app.services import CompactionPolicy, compact_oversized
from sessions_app.store import StoreUnavailable

TIME_LIMIT = settings.ROBOTPERF_COMPACTION["TIME_LIMIT"]
LOCK_TIMEOUT = settings.ROBOTPERF_COMPACTION["LOCK_TIMEOUT"]
# A lock that expired while its run goes on would let a second run overlap it.
if LOCK_TIMEOUT <= TIME_LIMIT:
    raise ImproperlyConfigured("COMPACTION_LOCK_TIMEOUT must be longer than COMPACTION_TIME_LIMIT")


@shared_task(
    acks_late=True,  # idempotent: a run redelivered after a crash repeats nothing harmful
    soft_time_limit=TIME_LIMIT * 0.9,
    time_limit=TIME_LIMIT,
    autoretry_for=(redis.ConnectionError, StoreUnavailable),
    retry_backoff=True,
    max_retries=3,
)
def compact_oversized_sessions():
    """Compact the oversized sessions with the policy in settings; the report as a dict."""
    with exclusive("compact-oversized-sessions", timeout=LOCK_TIMEOUT) as acquired:
        if not acquired:
            return {"skipped": "already running"}
        return compact_oversized(CompactionPolicy.from_settings()).as_dict()
