"""The robot's conversation store, sync and async: load, save, append_turns, update_state,
delete, size_breakdown.

Both stores drive the same sans-IO core (core.py) and differ only in how they talk to Redis:
`ConversationStore` on redis-py (threads: a web app, a job queue), `AsyncConversationStore` on
redis.asyncio (the asyncio robot), one client per event loop.
"""

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, Self, TypedDict, Unpack

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from convstore import breakdown, scripts
from convstore.cluster import AsyncClusterSender, ClusterSender
from convstore.codec import Codec
from convstore.connections import BlockingPool, safe_url
from convstore.core import StoreCore
from convstore.exceptions import (
    CorruptSession,
    NotReplicated,
    SessionBusy,
    SessionNotFound,
    StaleRevision,
    StoreError,
    StoreUnavailable,
)
from convstore.failures import store_error
from convstore.keys import KeyLayout
from convstore.pipelines import fewest, queue_all, replicated, without_waits
from convstore.protocol import (
    Archive,
    ArchiveRead,
    Batch,
    Operation,
    Request,
    Session,
    SizeBreakdown,
    Turn,
    ask,
    raise_for,
    send,
)
from convstore.state_fields import Merge

__all__ = [
    "AsyncConversationStore",
    "ConversationStore",
    "CorruptSession",
    "NotReplicated",
    "SessionBusy",
    "SessionNotFound",
    "StaleRevision",
    "StoreError",
    "StoreUnavailable",
]


class StoreOptions(TypedDict, total=False):
    """The options of both stores (README.md, Options)."""

    keys: KeyLayout | None
    ttl: int
    legacy_reads: bool
    archive: Archive | None
    bot_config_cache_size: int
    wait_replicas: int
    wait_timeout: float
    split_keys: tuple[str, ...]


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
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        split_keys: tuple[str, ...] = (),
    ) -> None:
        if wait_replicas < 0 or wait_timeout <= 0:
            raise ValueError(
                f"wait_replicas must be >= 0 and wait_timeout > 0, "
                f"got {wait_replicas!r} and {wait_timeout!r}"
            )
        self.core = StoreCore(
            codec,
            keys=keys or KeyLayout(),
            ttl=ttl,
            legacy_reads=legacy_reads,
            cache_size=bot_config_cache_size,
            split_keys=split_keys,
        )
        self.codec, self.keys, self.ttl = codec, self.core.keys, ttl
        self.url = safe_url(url)
        self.archive = archive
        self.wait_replicas, self.wait_timeout = wait_replicas, wait_timeout
        # WAIT's arguments after each write script: the replicas, the timeout in ms.
        self._wait = (wait_replicas, max(1, round(wait_timeout * 1000))) if wait_replicas else None

    def _no_archive(self) -> StoreError:
        return StoreError("this store has no archive: archived turns cannot be read")


class ConversationStore(_Store):
    """The conversation store on a redis-py client, shared by the threads of a process."""

    def __init__(
        self,
        client: redis.Redis | redis.cluster.RedisCluster,
        codec: Codec | None = None,
        **store_options: Unpack[StoreOptions],
    ) -> None:
        self.client = client
        self._cluster: ClusterSender | None = None
        if isinstance(client, redis.cluster.RedisCluster):
            # Its nodes' connections never retry; its own retries are not used by the store.
            self._cluster = ClusterSender(client)
            node: Any = client.get_default_node()  # type: ignore[no-untyped-call]
            url = f"redis://{node.host}:{node.port} (cluster)"
        else:
            pool = client.connection_pool
            pool.set_retry(Retry(NoBackoff(), 0))  # see failures.py: a write is never sent twice
            kwargs = pool.connection_kwargs
            url = f"redis://{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
        super().__init__(codec or Codec(), url=url, **store_options)

    @classmethod
    def from_url(
        cls,
        url: str,
        codec: Codec | None = None,
        *,
        cluster: bool = False,
        client_options: dict[str, Any] | None = None,
        **store_options: Unpack[StoreOptions],
    ) -> Self:
        """A store on a new client of the Redis at ``url`` (``client_options``: redis-py's);
        ``cluster``: of the Redis Cluster that ``url`` is a node of."""
        if cluster:
            client = redis.cluster.RedisCluster.from_url(url, **(client_options or {}))
            return cls(client, codec, **store_options)
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
        merge: Merge | None = None,
    ) -> int:
        """Apply top-level ``changes`` if the conversation is still at ``expected_rev``, and
        append the turns of ``append`` with them: one script, one round trip, all or nothing.

        ``merge`` ({split key: {sub-key: value}}) writes only those sub-keys of keys in
        ``split_keys``, in the same script. Returns the new revision; raises StaleRevision
        when another writer came first (then nothing is written, the turns neither).
        """
        return self.run(
            self.core.update_state(conversation_id, changes, expected_rev, append, merge)
        )

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
        least: int | None = None
        try:
            request = next(operation)
            while True:
                try:
                    answer, acked = self._exchange(request)
                except (redis.RedisError, RedisClusterException) as e:
                    request = operation.throw(store_error(e, request, self.url))
                else:
                    least = fewest(least, acked)
                    request = operation.send(answer)
        except StopIteration as done:
            result: T = done.value
            return replicated(result, least, self.wait_replicas, self.wait_timeout)
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
        return self._exchange(request)[0]

    def _exchange(self, request: Request) -> tuple[list[Any] | Iterable[Turn], int | None]:
        """`execute`'s answer, and the fewest replicas that acknowledged a write script of
        the batch (None: no WAIT was sent)."""
        if isinstance(request, ArchiveRead):
            if self.archive is None:
                raise self._no_archive()
            cid, incarnation, first = request
            return self.archive.turns(cid, incarnation, from_seq=first), None
        if self._cluster is not None:
            return self._cluster.execute(request, self._wait)
        client = self.client
        assert isinstance(client, redis.Redis)
        pipe = client.pipeline(transaction=False)
        waits = queue_all(pipe, request, self._wait)
        replies, acked = without_waits(pipe.execute(raise_on_error=False), waits)
        for i, reply in enumerate(replies):
            # Redis restarted or its scripts were flushed: load the script, run it alone.
            if isinstance(reply, redis.exceptions.NoScriptError):
                client.script_load(scripts.source(request[i].name))
                pipe = client.pipeline(transaction=False)
                waits = queue_all(pipe, request[i : i + 1], self._wait)
                (replies[i],), again = without_waits(pipe.execute(raise_on_error=False), waits)
                acked = fewest(acked, again)
        return replies, acked


class AsyncConversationStore(_Store):
    """The conversation store on redis.asyncio, one pooled client per event loop."""

    def __init__(
        self,
        url: str,
        codec: Codec | None = None,
        *,
        cluster: bool = False,
        client_options: dict[str, Any] | None = None,
        **options: Unpack[StoreOptions],
    ) -> None:
        super().__init__(codec or Codec(), url=url, **options)
        self._url, self._client_options = url, client_options or {}
        self.cluster = cluster
        # A client holds its loop (through its connections), so a weak mapping would never let
        # go: clients of closed loops are dropped whenever a new one is opened.
        self._clients: dict[asyncio.AbstractEventLoop, Any] = {}
        self._senders: dict[asyncio.AbstractEventLoop, AsyncClusterSender] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        codec: Codec | None = None,
        *,
        cluster: bool = False,
        client_options: dict[str, Any] | None = None,
        **options: Unpack[StoreOptions],
    ) -> Self:
        """A store on the Redis at ``url``: the same as the constructor, named like the sync
        store's."""
        return cls(url, codec, cluster=cluster, client_options=client_options, **options)

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
        merge: Merge | None = None,
    ) -> int:
        return await self.run(
            self.core.update_state(conversation_id, changes, expected_rev, append, merge)
        )

    async def delete(self, conversation_id: str) -> bool:
        return await self.run(self.core.delete(conversation_id))

    async def size_breakdown(self, conversation_id: str) -> SizeBreakdown:
        return await self.run(breakdown.size_breakdown(self.core, conversation_id))

    @property
    def client(self) -> Any:
        """This event loop's client (a redis.asyncio.Redis, or a
        redis.asyncio.cluster.RedisCluster for a cluster), opened on first use.

        The pool of a Redis waits for a free connection (up to the socket timeout) rather than
        failing a load when all are busy.
        """
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for closed in [other for other in self._clients if other.is_closed()]:
                del self._clients[closed]
                self._senders.pop(closed, None)
            client = self._clients[loop] = self._open()
            if self.cluster:
                self._senders[loop] = AsyncClusterSender(client)
        return client

    def _open(self) -> Any:
        if self.cluster:
            # Its nodes' connections never retry; its own retries are not used by the store.
            return redis.asyncio.cluster.RedisCluster.from_url(self._url, **self._client_options)
        # See failures.py: a write is never sent twice, whatever the options ask.
        options = {**self._client_options, "retry": redis.asyncio.retry.Retry(NoBackoff(), 0)}
        timeout = options.get("socket_timeout") or 5
        pool = BlockingPool.from_url(self._url, timeout=timeout, **options)
        return redis.asyncio.Redis(connection_pool=pool)

    async def aclose(self) -> None:
        """Close this event loop's client; the next call opens a new one."""
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        self._senders.pop(loop, None)
        if isinstance(client, redis.asyncio.Redis):
            await client.aclose(close_connection_pool=True)
        elif client is not None:
            await client.aclose()

    async def run[T](self, operation: Operation[T]) -> T:
        least: int | None = None
        try:
            request = next(operation)
            while True:
                try:
                    answer, acked = await self._exchange(request)
                except (redis.RedisError, RedisClusterException) as e:
                    request = operation.throw(store_error(e, request, self.url))
                else:
                    least = fewest(least, acked)
                    request = operation.send(answer)
        except StopIteration as done:
            result: T = done.value
            return replicated(result, least, self.wait_replicas, self.wait_timeout)
        finally:
            operation.close()

    async def execute(self, request: Request) -> list[Any] | Iterable[Turn]:
        return (await self._exchange(request))[0]

    async def _exchange(self, request: Request) -> tuple[list[Any] | Iterable[Turn], int | None]:
        if isinstance(request, ArchiveRead):
            if self.archive is None:
                raise self._no_archive()
            cid, incarnation, first = request
            return await self.archive.aturns(cid, incarnation, from_seq=first), None
        client = self.client
        if self.cluster:
            sender = self._senders[asyncio.get_running_loop()]
            return await sender.execute(request, self._wait)
        pipe = client.pipeline(transaction=False)
        waits = queue_all(pipe, request, self._wait)
        replies, acked = without_waits(await pipe.execute(raise_on_error=False), waits)
        for i, reply in enumerate(replies):
            if isinstance(reply, redis.exceptions.NoScriptError):
                await client.script_load(scripts.source(request[i].name))
                pipe = client.pipeline(transaction=False)
                waits = queue_all(pipe, request[i : i + 1], self._wait)
                (replies[i],), again = without_waits(
                    await pipe.execute(raise_on_error=False), waits
                )
                acked = fewest(acked, again)
        return replies, acked
