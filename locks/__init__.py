"""Redis locks that keep two runs of one job, or two operations on one session, apart.

A lock carries a random token and an expiry; releasing checks the token atomically, so a run
never releases a lock that another run took after its own expired.
"""

import logging
import secrets
from contextlib import contextmanager

from django.conf import settings
from django_redis import get_redis_connection
from redis.cluster import RedisCluster
from redis.exceptions import (
    ClusterError,
    ConnectionError,
    LockError,
    LockNotOwnedError,
    TimeoutError,
)
from redis.lock import Lock

log = logging.getLogger(__name__)


class LockHeld(Exception):
    """Another run holds the lock."""

    def __init__(self, name):
        super().__init__(f"another run holds the lock {name!r}; try again when it has ended")
        self.name = name


class LockLost(LockHeld):
    """The lock expired during the run and another run took it."""

    def __init__(self, name):
        Exception.__init__(
            self, f"the lock {name!r} expired during this run and another run took it: stopped"
        )
        self.name = name


class LockUnavailable(ConnectionError):
    """The Redis that keeps the locks did not answer (a ConnectionError: tasks retry on it)."""


class RunLock(Lock):
    """redis-py's lock, taken even when Redis is full (its key is a few bytes, and the runs it
    guards are how an operator frees memory), and renewed with this module's errors."""

    ACQUIRE = (
        "#!lua flags=allow-oom\nreturn redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])"
    )

    def do_acquire(self, token):
        acquire = self.redis.register_script(self.ACQUIRE)
        return bool(acquire(keys=[self.name], args=[token, int(self.timeout * 1000)]))

    def reacquire(self):
        """Reset the lock's expiry: LockLost when another run has taken it meanwhile."""
        try:
            return super().reacquire()
        except LockNotOwnedError:
            raise LockLost(self.name) from None
        except (ConnectionError, TimeoutError, ClusterError) as e:
            raise _unavailable(self.redis, e) from e


RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"


def _unavailable(client, error):
    if isinstance(client, RedisCluster):
        node = client.get_default_node()
        where = f"redis://{node.host}:{node.port} (cluster)"
    else:
        kwargs = client.connection_pool.connection_kwargs
        where = f"redis://{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
    return LockUnavailable(f"Redis at {where} is unreachable: {error}")


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
        lock_class=RunLock,
    )
    try:
        acquired = lock.acquire()
    except (ConnectionError, TimeoutError, ClusterError) as e:
        raise _unavailable(client, e) from e
    if not acquired:
        raise LockHeld(name)
    try:
        yield lock
    finally:
        try:
            lock.release()
        except (LockError, ConnectionError, TimeoutError, ClusterError):
            # An expired lock, or a Redis gone: the run's own outcome is what to report.
            log.warning("lock %s expired before the run ended; another run may overlap", name)


@contextmanager
def exclusive_each(names, *, timeout):
    """Hold each lock of ``names`` that no one else holds, all taken in one round trip and
    released in another; yields the set of names held (the others' holders are not waited for).

    The same locks as `exclusive`'s: a run holding one of them here keeps out an `exclusive`
    of the same name, and the other way round.
    """
    config = settings.ROBOTPERF_LOCKS
    client = get_redis_connection(config["CACHE_ALIAS"])
    acquire, release = client.register_script(RunLock.ACQUIRE), client.register_script(RELEASE)
    tokens = {config["KEY_PREFIX"] + name: (name, secrets.token_hex(16)) for name in names}
    try:
        taken = _run_each(
            client,
            acquire,
            [([key], [token, int(timeout * 1000)]) for key, (_, token) in tokens.items()],
        )
    except (ConnectionError, TimeoutError, ClusterError) as e:
        raise _unavailable(client, e) from e
    held = {key: tokens[key] for key, ok in zip(tokens, taken, strict=True) if ok}
    try:
        yield {name for name, _ in held.values()}
    finally:
        try:
            _run_each(client, release, [([key], [token]) for key, (_, token) in held.items()])
        except (ConnectionError, TimeoutError, ClusterError):
            log.warning("%d locks could not be released; they expire by themselves", len(held))


def _run_each(client, script, calls):
    """The replies of ``script`` for each (keys, args) of ``calls``: in one pipeline, or one by
    one on a cluster (its pipelines take no script, and the keys are in slots of their own)."""
    if isinstance(client, RedisCluster):
        return [script(keys=keys, args=args) for keys, args in calls]
    pipe = client.pipeline(transaction=False)
    for keys, args in calls:
        script(keys=keys, args=args, client=pipe)
    return pipe.execute()
