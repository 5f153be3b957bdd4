"""The slow-call log and the live latency of this project's processes: the library's log
enabled from settings in every process, and read back for the admin. Read-only otherwise."""

import os
import sys
import time

from django.conf import settings
from redis.cluster import RedisCluster

from convstore import (
    MinuteLatency,
    SlowCall,
    SlowCallLog,
    enable_slow_log,
    read_latency,
    read_slow_calls,
)
from sessions_app.checks import observing_limits
from sessions_app.store import get_store, key_layout, redis_url

SHOWN = 200
"""Slow calls the admin page lists at most."""
MINUTES = 60
"""Minutes of latency the dashboard draws."""
CALLS = (
    "robot-v2.load-conversation",
    "robot-v2.save-conversation",
    "robot-v2.append-turns",
    "robot-v2.update-state",
)


def enable_from_settings() -> SlowCallLog | None:
    """Log this process's slow store calls, and count its latency, in the store's Redis (each
    process calls it once its apps are ready); None when ``SLOW_CALL_LOG`` is off."""
    if not settings.SLOW_CALL_LOG or observing_limits():  # robotperf.E002 names the number
        return None
    cache = settings.CACHES[settings.ROBOTPERF_STORE["CACHE_ALIAS"]]
    target = redis_url(cache)
    if settings.ROBOTPERF_STORE["CLUSTER"]:
        # A client of the cluster, of its own (the library's own from a URL is of one Redis).
        options = {"socket_timeout": 1, "socket_connect_timeout": 1, "max_connections": 2}
        target = RedisCluster.from_url(target, **options)
    return enable_slow_log(
        target,
        threshold=settings.SLOW_CALL_THRESHOLD_MS / 1000,
        maxlen=settings.SLOW_CALL_LOG_MAXLEN,
        name=process_name(sys.argv),
        keys=key_layout(),
    )


def process_name(argv: list[str]) -> str:
    """What a process is, from its command line: "gunicorn", "celery worker", "celery beat",
    "manage.py runserver"."""
    program = os.path.basename(argv[0]) if argv else ""
    if program == "manage.py" and len(argv) > 1:
        return f"{program} {argv[1]}"
    role = next((arg for arg in argv[1:] if arg in ("worker", "beat")), "")
    return f"{program} {role}".strip()


def slow_calls(*, call: str = "", conversation_id: str = "", count: int = SHOWN) -> list[SlowCall]:
    """The last slow calls, newest first, of one call and one conversation when given."""
    store = get_store()
    return read_slow_calls(
        store.client,
        count,
        call=call or None,
        conversation_id=conversation_id or None,
        keys=store.keys,
    )


def load_latency(*, now: float | None = None) -> list[MinuteLatency]:
    """The p50 and p99 of the loads of every process in each of the last 60 minutes."""
    store = get_store()
    now = time.time() if now is None else now
    return read_latency(store.client, now=now, minutes=MINUTES, keys=store.keys)
