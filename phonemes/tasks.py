"""Celery tasks of the phoneme cache: the scheduled eviction of tier-2 rows.

Idempotent (a second run finds nothing to delete) and never overlapping (a Redis lock).
"""

from datetime import timedelta

import redis
from celery import shared_task
from django.conf import settings
from django.db import InterfaceError

from locks import LockHeld, exclusive
from phonemes.services import evict_stale

LOCK_TIMEOUT = 15 * 60


@shared_task(
    acks_late=True,
    soft_time_limit=10 * 60,
    time_limit=LOCK_TIMEOUT - 60,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError, InterfaceError),
    retry_backoff=True,
    retry_jitter=False,  # a jittered countdown of 0 can race the failed attempt's RETRY state
    max_retries=3,
)
def evict_stale_phoneme_cache():
    """Evict with the limits in settings; returns the report as a dict."""
    limits = settings.ROBOTPERF_PHONEMES
    try:
        with exclusive("evict-phoneme-cache", timeout=LOCK_TIMEOUT):
            report = evict_stale(
                older_than=timedelta(days=limits["EVICT_OLDER_THAN_DAYS"]),
                max_rows=limits["EVICT_MAX_ROWS"],
                max_bytes=limits["EVICT_MAX_BYTES"],
                batch=limits["EVICT_BATCH"],
            )
    except LockHeld:
        return {"status": "skipped: already running"}
    return {"status": "done", **report.as_dict()}
