"""What redis-py raised, as the store's error: the one place where the store's I/O failures are
named for its callers.

A write whose connection failed after it was sent may have happened: the error says so
(``maybe_written``), because neither "failed" nor "done" would be true. redis-py's own retries
are off on the stores' connections for the same reason: resending a write that timed out would
apply it twice.
"""

import redis
from redis.exceptions import RedisClusterException

from convstore.cluster import sent_error
from convstore.connections import PoolExhausted
from convstore.exceptions import StoreError, StoreOverloaded, StoreUnavailable
from convstore.protocol import Request, refused, writes


def store_error(
    error: redis.RedisError | RedisClusterException, request: Request, url: str
) -> StoreError:
    """The store's error for what redis-py raised while ``request`` was sent to ``url``."""
    failure: StoreError
    if isinstance(error, redis.exceptions.ClusterError | RedisClusterException):
        # Nothing was sent: the slot map could not be read, or a slot has no primary.
        failure = StoreUnavailable(f"the Redis Cluster at {url} cannot serve now: {error}")
    elif isinstance(error, PoolExhausted):
        failure = StoreOverloaded(
            f"overloaded: the pool of {error.size} connections to Redis at {url} stayed "
            f"exhausted for {error.waited:.2f} s (it waits at most {error.limit} s); "
            "nothing was sent: retry later, or give the pool more connections"
        )
    elif isinstance(error, redis.ConnectionError | redis.TimeoutError):
        maybe = sent_error(error) and isinstance(request, list) and writes(request)
        text = f"Redis at {url} is unreachable: {error}"
        if maybe:
            text += "; the write may have happened: load the conversation before retrying"
        unavailable = StoreUnavailable(text)
        unavailable.maybe_written = maybe
        failure = unavailable
    else:
        refusal = refused(error, f"a request to Redis at {url}")
        failure = refusal or StoreError(f"Redis at {url} failed: {error}")
    failure.__cause__ = error
    return failure
