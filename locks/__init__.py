"""Redis locks that keep two runs of one job, or two operations on one session, apart.

A lock carries a random token and an expiry; releasing checks the token atomically, so a run
never releases a lock that another run took after its own expired.
"""

import logging
from contextlib import contextmanager

from django.conf import settings
from django_redis import get_redis_connection
from redis.exceptions import ConnectionError, LockError, TimeoutError

log = logging.getLogger(__name__)


class LockHeld(Exception):
    """Another run holds the lock."""

    def __init__(self, name):
        super().__init__(f"another run holds the lock {name!r}; try again when it has ended")
        self.name = name


class LockUnavailable(ConnectionError):
    """The Redis that keeps the locks did not answer (a ConnectionError: tasks retry on it)."""


@contextmanager
def exclusive(name, *, timeout, wait=0):
    """Hold the lock ``name`` for up to ``timeout`` seconds, waiting up to ``wait`` for it.

    Yields the lock (``reacquire()`` resets its expiry during a long run); raises LockHeld when
    another run keeps it longer than ``wait``.
    """
    config = settings.ROBOTPERF_LOCKS
    client = get_redis_connection(config["CACHE_ALIAS"])
    lock = client.lock(
        config["KEY_PREFIX"] + name,
        timeout=timeout,
        blocking=wait > 0,
        blocking_timeout=wait or None,
    )
    try:
        acquired = lock.acquire()
    except (ConnectionError, TimeoutError) as e:
        kwargs = client.connection_pool.connection_kwargs
        where = f"redis://{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
        raise LockUnavailable(f"Redis at {where} is unreachable: {e}") from e
    if not acquired:
        raise LockHeld(name)
    try:
        yield lock
    finally:
        try:
            lock.release()
        except (LockError, ConnectionError, TimeoutError):
            # An expired lock, or a Redis gone: the run's own outcome is what to report.
            log.warning("lock %s expired before the run ended; another run may overlap", name)
