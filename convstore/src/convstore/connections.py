"""How the stores name and pool their connections: URLs without passwords, and an async pool
that tells an exhausted pool from an unreachable Redis."""

import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio


def safe_url(url: str) -> str:
    """``url`` with its password masked, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class PoolExhausted(redis.ConnectionError):
    """No pooled connection came free within the pool's wait; no request was sent."""

    def __init__(self, size: int, waited: float, limit: float | None) -> None:
        super().__init__(f"no connection of {size} came free in {waited:.2f} s")
        self.size, self.waited, self.limit = size, waited, limit


class BlockingPool(redis.asyncio.BlockingConnectionPool):
    """redis.asyncio's blocking pool, telling an exhausted pool from an unreachable Redis."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.ConnectionError as e:
            # Its wait timed out: redis.asyncio raises ConnectionError("No connection
            # available.") from the asyncio TimeoutError; a failed connect has another cause.
            if not isinstance(e.__cause__, TimeoutError):
                raise
            raise PoolExhausted(
                self.max_connections, time.monotonic() - started, self.timeout
            ) from e
