"""Liveness and readiness: whether each service the project needs answers.

Every check runs in a thread of its own, all at once, each given the same short timeout
(``ROBOTPERF_HEALTH["TIMEOUT"]``): a readiness probe takes as long as the slowest service, and
a service that hangs answers "timeout" instead of holding the probe. A failure is named by its
exception type only; the details (hosts, ports) go to the log, not to an unauthenticated caller.
"""

import logging
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import redis
from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)


def ping_redis(url, timeout):
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


class ClusterNotOk(redis.ConnectionError):
    """A node of the Redis Cluster answered, but the cluster cannot serve every slot."""


def check_redis(timeout):
    """The Redis of the conversation store (and the locks): the ``sessions`` cache alias; on a
    Redis Cluster, whether the node it names says the cluster is ok."""
    url = settings.CACHES["sessions"]["LOCATION"]
    if not settings.ROBOTPERF_STORE["CLUSTER"]:
        ping_redis(url, timeout)
        return
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        state = client.execute_command("CLUSTER INFO")["cluster_state"]
    finally:
        client.close()
    if state != "ok":
        raise ClusterNotOk(f"cluster_state:{state}")


def check_broker(timeout):
    """Celery's broker (a Redis database, see settings): where the admin's jobs are queued."""
    ping_redis(settings.CELERY_BROKER_URL, timeout)


def check_database(timeout):
    """The archive database, on a connection of its own (this runs in a thread of its own)."""
    connection = connections.create_connection("default")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


def check_phonemes(timeout):
    """The phoneme (G2P) server's own health page."""
    with urllib.request.urlopen(f"{settings.PHONEME_URL}/health", timeout=timeout) as answer:
        answer.read()


CHECKS = {
    "redis": check_redis,
    "database": check_database,
    "broker": check_broker,
    "phonemes": check_phonemes,
}


def run_check(name, check, timeout):
    """One check's result: ``{"ok", "latency_ms"}``, with ``error`` when it failed."""
    started = time.perf_counter()
    try:
        check(timeout)
        error = None
    except Exception as e:
        logger.warning("readiness check %s failed: %r", name, e)
        error = type(e).__name__
    result = {"ok": error is None, "latency_ms": round((time.perf_counter() - started) * 1e3, 2)}
    return result if error is None else {**result, "error": error}


def readiness():
    """``{"status": "ok" | "unavailable", "checks": {name: result}}`` for every check."""
    timeout = settings.ROBOTPERF_HEALTH["TIMEOUT"]
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="readyz")
    futures = {name: pool.submit(run_check, name, check, timeout) for name, check in CHECKS.items()}
    deadline = time.monotonic() + timeout
    results = {}
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            results[name] = {"ok": False, "latency_ms": timeout * 1e3, "error": "timeout"}
    # A check past its deadline finishes on its own (its client's timeout bounds it); nobody waits.
    pool.shutdown(wait=False)
    status = "ok" if all(result["ok"] for result in results.values()) else "unavailable"
    return {"status": status, "checks": results}
