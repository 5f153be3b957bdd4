"""The robot's conversation store, sync and async: load, save, append_turns, update_state,
delete, size_breakdown.

Both stores drive the same sans-IO core (core.py) and differ only in how they talk to Redis:
`ConversationStore` on redis-py (threads: a web app, a job queue), `AsyncConversationStore` on
redis.asyncio (the asyncio robot), one client per event loop.
"""

import asyncio
import hashlib
import time
from collections.abc import Iterable, Mapping
from typing import Any, Self, TypedDict, Unpack
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.retry import Retry

from convstore import breakdown, scripts
from convstore.codec import Codec
from convstore.core import StoreCore
from convstore.exceptions import (
    CorruptSession,
    SessionBusy,
    SessionNotFound,
    StaleRevision,
    StoreError,
    StoreOverloaded,
    StoreUnavailable,
)
from convstore.keys import KeyLayout
from convstore.protocol import (
    Archive,
    ArchiveRead,
    Batch,
    Command,
    Operation,
    Request,
    Script,
    Session,
    SizeBreakdown,
    Turn,
    ask,
    raise_for,
    refused,
    send,
    writes,
)

__all__ = [
    "AsyncConversationStore",
    "ConversationStore",
    "CorruptSession",
    "SessionBusy",
    "SessionNotFound",
    "StaleRevision",
    "StoreError",
    "StoreUnavailable",
]

_SHAS = {name: hashlib.sha1(scripts.source(name).encode()).hexdigest() for name in scripts.NAMES}


class StoreOptions(TypedDict, total=False):
    """The options of both stores (README.md, Options)."""

    keys: KeyLayout | None
    ttl: int
    legacy_reads: bool
    archive: Archive | None
    bot_config_cache_size: int


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


class _BlockingPool(redis.asyncio.BlockingConnectionPool):
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


class _Store:
    """What both stores share: the core and its options, and how a request is queued."""

    def __init__(
        self,
        codec: Codec,
        *,
        url: str,
        keys: KeyLayout | None = None,
        ttl: int = 0,
        legacy_reads: bool = True,
        archive: Archive | None = None,
        bot_config_cache_size: int = 256,
    ) -> None:
        self.core = StoreCore(
            codec,
            keys=keys or KeyLayout(),
            ttl=ttl,
            legacy_reads=legacy_reads,
            cache_size=bot_config_cache_size,
        )
        self.codec, self.keys, self.ttl = codec, self.core.keys, ttl
        self.url = safe_url(url)
        self.archive = archive

    def _failed(self, error: redis.RedisError, request: Request) -> StoreError:
        """The store's error for what redis-py raised while ``request`` was sent.

        A write whose connection failed after it was sent may have happened: the error says so
        (``maybe_written``), because neither "failed" nor "done" would be true. redis-py's own
        retries are off for the same reason: resending a write that timed out would apply it
        twice.
        """
        failure: StoreError
        if isinstance(error, PoolExhausted):
            failure = StoreOverloaded(
                f"overloaded: the pool of {error.size} connections to Redis at {self.url} stayed "
                f"exhausted for {error.waited:.2f} s (it waits at most {error.limit} s); "
                "nothing was sent: retry later, or give the pool more connections"
            )
        elif isinstance(error, redis.ConnectionError | redis.TimeoutError):
            sent = "connecting to" not in str(error)
            maybe = sent and isinstance(request, list) and writes(request)
            text = f"Redis at {self.url} is unreachable: {error}"
            if maybe:
                text += "; the write may have happened: load the conversation before retrying"
            unavailable = StoreUnavailable(text)
            unavailable.maybe_written = maybe
            failure = unavailable
        else:
            refusal = refused(error, f"a request to Redis at {self.url}")
            failure = refusal or StoreError(f"Redis at {self.url} failed: {error}")
        failure.__cause__ = error
        return failure

    def _no_archive(self) -> StoreError:
        return StoreError("this store has no archive: archived turns cannot be read")

    @staticmethod
    def _queue(
        pipe: redis.client.Pipeline | redis.asyncio.client.Pipeline, request: Command | Script
    ) -> None:
        if isinstance(request, Script):
            args = (*request.keys, *request.args)
            pipe.evalsha(_SHAS[request.name], len(request.keys), *args)
        else:
            getattr(pipe, request.name)(*request.args)


class ConversationStore(_Store):
    """The conversation store on a redis-py client, shared by the threads of a process."""

    def __init__(
        self, client: redis.Redis, codec: Codec | None = None, **store_options: Unpack[StoreOptions]
    ) -> None:
        self.client = client
        pool = client.connection_pool
        pool.set_retry(Retry(NoBackoff(), 0))  # see _failed: a write is never sent twice
        kwargs = pool.connection_kwargs
        url = f"redis://{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
        super().__init__(codec or Codec(), url=url, **store_options)

    @classmethod
    def from_url(
        cls,
        url: str,
        codec: Codec | None = None,
        *,
        client_options: dict[str, Any] | None = None,
        **store_options: Unpack[StoreOptions],
    ) -> Self:
        """A store on a new client of the Redis at ``url`` (``client_options``: redis-py's)."""
        return cls(redis.Redis.from_url(url, **(client_options or {})), codec, **store_options)

    def load(self, conversation_id: str, window: int | None = 20) -> Session | None:
        """The conversation as the robot has always seen it, with the last ``window`` turns.

        ``window=None`` returns every turn, archived ones first; the database is read only
        when the window reaches past the turns still in Redis. Returns None when there is none.
        The bot_config is shared between loads: treat it as read-only.
        """
        return self.run(self.core.load(conversation_id, window))

    def save(self, session: Session) -> int:
        """Create or replace a whole conversation; returns its new revision.

        A dict that ``load`` returned (it carries ``_rev``) is written back as a state update
        checked against that revision, plus the turns without a ``seq``, which are new.
        """
        return self.run(self.core.save(session))

    def append_turns(self, conversation_id: str, turns: Iterable[Turn]) -> list[int]:
        """Append turns in O(1) each; returns their sequence numbers."""
        return self.run(self.core.append_turns(conversation_id, turns))

    def update_state(
        self,
        conversation_id: str,
        changes: Mapping[str, Any],
        expected_rev: int,
        *,
        append: Iterable[Turn] = (),
    ) -> int:
        """Apply top-level ``changes`` if the conversation is still at ``expected_rev``, and
        append the turns of ``append`` with them: one script, one round trip, all or nothing.

        Returns the new revision; raises StaleRevision when another writer came first (then
        nothing is written, the turns neither).
        """
        return self.run(self.core.update_state(conversation_id, changes, expected_rev, append))

    def delete(self, conversation_id: str) -> bool:
        """Remove a conversation from Redis; True when there was one."""
        return self.run(self.core.delete(conversation_id))

    def size_breakdown(self, conversation_id: str) -> SizeBreakdown:
        """Bytes of each part of a conversation as stored (from Redis, nothing decoded)."""
        return self.run(breakdown.size_breakdown(self.core, conversation_id))

    def run[T](self, operation: Operation[T]) -> T:
        """Drive one of the core's operations to its result; what redis-py raises is thrown
        into it as the store's error (it may carry on: a failed index update is not the
        call's failure)."""
        try:
            request = next(operation)
            while True:
                try:
                    answer = self.execute(request)
                except redis.RedisError as e:
                    request = operation.throw(self._failed(e, request))
                else:
                    request = operation.send(answer)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            # A call that failed half-way ends its spans here, in the context it began in.
            operation.close()

    def ask(self, batch: Batch) -> list[Any]:
        """The checked replies of one batch (core.Command and core.Script), in one round trip."""
        return self.run(ask(batch))

    def send(self, batch: Batch) -> list[Any]:
        """The replies of one batch, error replies as values, in one round trip."""
        return self.run(send(batch))

    def raise_for(self, replies: list[Any], batch: Batch) -> list[Any]:
        """``replies`` of ``batch``, raising the store's error for the first error among them."""
        return self.run(raise_for(replies, batch))

    def execute(self, request: Request) -> list[Any] | Iterable[Turn]:
        """The answer to one request of the core: a batch's replies, or archived turns; what
        redis-py raises is raised as it is (`run` maps it)."""
        if isinstance(request, ArchiveRead):
            if self.archive is None:
                raise self._no_archive()
            cid, incarnation, first = request
            return self.archive.turns(cid, incarnation, from_seq=first)
        pipe = self.client.pipeline(transaction=False)
        for item in request:
            self._queue(pipe, item)
        replies = pipe.execute(raise_on_error=False)
        for i, reply in enumerate(replies):
            # Redis restarted or its scripts were flushed: load the script, run it alone.
            if isinstance(reply, redis.exceptions.NoScriptError):
                self.client.script_load(scripts.source(request[i].name))
                pipe = self.client.pipeline(transaction=False)
                self._queue(pipe, request[i])
                replies[i] = pipe.execute(raise_on_error=False)[0]
        return replies


class AsyncConversationStore(_Store):
    """The conversation store on redis.asyncio, one pooled client per event loop."""

    def __init__(
        self,
        url: str,
        codec: Codec | None = None,
        *,
        client_options: dict[str, Any] | None = None,
        **options: Unpack[StoreOptions],
    ) -> None:
        super().__init__(codec or Codec(), url=url, **options)
        self._url, self._client_options = url, client_options or {}
        # A client holds its loop (through its connections), so a weak mapping would never let
        # go: clients of closed loops are dropped whenever a new one is opened.
        self._clients: dict[asyncio.AbstractEventLoop, redis.asyncio.Redis] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        codec: Codec | None = None,
        *,
        client_options: dict[str, Any] | None = None,
        **options: Unpack[StoreOptions],
    ) -> Self:
        """A store on the Redis at ``url``: the same as the constructor, named like the sync
        store's."""
        return cls(url, codec, client_options=client_options, **options)

    async def load(self, conversation_id: str, window: int | None = 20) -> Session | None:
        return await self.run(self.core.load(conversation_id, window))

    async def save(self, session: Session) -> int:
        return await self.run(self.core.save(session))

    async def append_turns(self, conversation_id: str, turns: Iterable[Turn]) -> list[int]:
        return await self.run(self.core.append_turns(conversation_id, turns))

    async def update_state(
        self,
        conversation_id: str,
        changes: Mapping[str, Any],
        expected_rev: int,
        *,
        append: Iterable[Turn] = (),
    ) -> int:
        return await self.run(
            self.core.update_state(conversation_id, changes, expected_rev, append)
        )

    async def delete(self, conversation_id: str) -> bool:
        return await self.run(self.core.delete(conversation_id))

    async def size_breakdown(self, conversation_id: str) -> SizeBreakdown:
        return await self.run(breakdown.size_breakdown(self.core, conversation_id))

    @property
    def client(self) -> redis.asyncio.Redis:
        """This event loop's client, opened on first use.

        Its pool waits for a free connection (up to the socket timeout) rather than failing a
        load when all are busy.
        """
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for closed in [other for other in self._clients if other.is_closed()]:
                del self._clients[closed]
            # See _failed: a write is never sent twice, whatever the options ask.
            options = {**self._client_options, "retry": redis.asyncio.retry.Retry(NoBackoff(), 0)}
            pool = _BlockingPool.from_url(
                self._url, timeout=options.get("socket_timeout") or 5, **options
            )
            client = self._clients[loop] = redis.asyncio.Redis(connection_pool=pool)
        return client

    async def aclose(self) -> None:
        """Close this event loop's client; the next call opens a new one."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose(close_connection_pool=True)

    async def run[T](self, operation: Operation[T]) -> T:
        try:
            request = next(operation)
            while True:
                try:
                    answer = await self.execute(request)
                except redis.RedisError as e:
                    request = operation.throw(self._failed(e, request))
                else:
                    request = operation.send(answer)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            operation.close()

    async def execute(self, request: Request) -> list[Any] | Iterable[Turn]:
        if isinstance(request, ArchiveRead):
            if self.archive is None:
                raise self._no_archive()
            cid, incarnation, first = request
            return await self.archive.aturns(cid, incarnation, from_seq=first)
        client = self.client
        pipe = client.pipeline(transaction=False)
        for item in request:
            self._queue(pipe, item)
        replies = await pipe.execute(raise_on_error=False)
        for i, reply in enumerate(replies):
            if isinstance(reply, redis.exceptions.NoScriptError):
                await client.script_load(scripts.source(request[i].name))
                pipe = client.pipeline(transaction=False)
                self._queue(pipe, request[i])
                replies[i] = (await pipe.execute(raise_on_error=False))[0]
        return replies
