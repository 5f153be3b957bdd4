"""How the stores send a batch to a Redis Cluster: split by hash slot, one pipeline per node.

Each request goes to the primary of its key's slot (redis-py's slot map); every node is written
to before any is read, so a batch costs one round trip however many nodes it reaches (a write
reaches at most three: its conversation's, the shared keys', its bot_config's). redis-py's
cluster pipeline is not used: it refuses EVALSHA and resends commands after a connection error.
MOVED and ASK resend a request where the cluster says; NOSCRIPT loads the script on that node;
a multi-key DEL or EXISTS is split per slot; a SCAN walks every primary in turn. A node that
fails makes its requests' replies `StoreUnavailable` (``maybe_written`` when a write was sent
to it), so a script that ran beside a failed index command still counts as done (indexing.py),
and the slot map is read again, so a process follows a failover once the cluster recovered.
The rules are a generator (`exchange`) that the sync and the async sender drive.
"""

import asyncio
import time
from collections.abc import Generator
from typing import Any, NamedTuple

import redis
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot

from convstore import scripts
from convstore.cluster_scan import SHARDS, primaries_in_slot_order, scan_reply, scan_request
from convstore.exceptions import StoreUnavailable
from convstore.pipelines import Wait, fewest, queue, waits_for
from convstore.protocol import Batch, Command, Script, writes

MULTI_KEY = frozenset({"delete", "exists", "unlink", "touch"})
"""Commands whose every argument is a key, split per slot and their replies summed."""
REDIRECTS = 5
"""Rounds of MOVED/ASK/NOSCRIPT resends before a request is reported unavailable."""
REFRESH_EVERY = 0.1
"""Seconds between two reads of the slot map while nodes keep failing."""
WAIT = -1
"""The batch index of a WAIT after a write script (its reply is the replicas' count)."""


class Item(NamedTuple):
    """One command sent to one node: ``at`` is where in the batch its reply belongs."""

    at: int
    args: tuple[Any, ...]
    options: dict[str, Any]
    slot: int | None
    writes: bool
    script: str | None = None
    target: str | None = None
    """The node ("host:port") a MOVED or ASK named; None: the primary of ``slot``."""
    asking: bool = False


class Failed(NamedTuple):
    """A node's part that got no replies: ``sent`` when its commands may have reached it."""

    error: Exception
    sent: bool


class Refresh(NamedTuple):
    """Read the slot map again (now if it was not just read, else before the next batch)."""


class LoadScript(NamedTuple):
    node: Any
    name: str


type Round = dict[str, tuple[Any, list[Item]]]
"""Node name -> (the cluster client's node, the items sent to it)."""
type Results = dict[str, list[Any] | Failed]
type Exchange = Generator[Round | Refresh | LoadScript, Any, tuple[list[Any], int | None]]


class Recorder:
    """What redis-py's command methods would send: ``(args, options)`` per call, queued."""

    def __init__(self) -> None:
        self.stack: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def execute_command(self, *args: Any, **options: Any) -> None:
        self.stack.append((args, options))

    def __getattr__(self, name: str) -> Any:
        method = getattr(redis.Redis, name)
        return lambda *args, **kwargs: method(self, *args, **kwargs)


def slot_of(key: str | bytes) -> int:
    return key_slot(key.encode() if isinstance(key, str) else key)


def plan(batch: Batch, wait: Wait) -> list[Item]:
    """The items of ``batch``: one per request (per slot for a multi-key command), a WAIT
    after each write script when ``wait`` is (replicas, timeout in ms)."""
    items = []
    for index, request in enumerate(batch):
        parts: list[Command | Script] = [request]
        if isinstance(request, Command) and request.name in MULTI_KEY:
            by_slot: dict[int, list[Any]] = {}
            for key in request.args:
                by_slot.setdefault(slot_of(key), []).append(key)
            parts = [request._replace(args=tuple(keys)) for keys in by_slot.values()]
        for part in parts:
            recorder = Recorder()
            queue(recorder, part)
            ((args, options),) = recorder.stack
            script = part.name if isinstance(part, Script) else None
            key = part.keys[0] if isinstance(part, Script) else (part.args or (None,))[0]
            slot = None if key is None else slot_of(key)
            items.append(Item(index, args, options, slot, writes([part]), script))
            if wait and waits_for(part, wait):
                items.append(Item(WAIT, ("WAIT", *wait), {}, slot, False))
    return items


def exchange(items: list[Item], size: int, nodes: Any) -> Exchange:
    """Send ``items`` (of a batch of ``size``) through ``nodes`` (the cluster client's nodes
    manager), following redirects: (the batch's replies, the replicas that acknowledged its
    write script, None without a WAIT).

    What comes before a batch's first script (the bot_config it names) is sent first, so that
    no reader finds the script's reference before what it refers to.
    """
    replies: list[Any] = [None] * size
    answered = [False] * size
    acked: int | None = None
    first = next((i for i, item in enumerate(items) if item.script), 0)
    waves = [items[:first], items[first:]] if first else [items]
    for pending in waves:
        for _ in range(REDIRECTS):
            parts = route(pending, nodes)
            results: Results = yield parts
            again, refresh = [], False
            for name, (node, sent) in parts.items():
                result = results[name]
                if isinstance(result, Failed):
                    refresh, failure = True, unreachable(name, result, sent)
                    for item in sent:
                        if item.at != WAIT:
                            _merge(replies, answered, item.at, failure)
                    continue
                resent = False  # the script a WAIT follows is sent again: so is the WAIT
                for item, reply in zip(sent, result, strict=True):
                    if isinstance(reply, redis.exceptions.AskError):  # MOVED is one too
                        moved = isinstance(reply, redis.exceptions.MovedError)
                        target = f"{reply.host}:{reply.port}"
                        again.append(item._replace(target=target, asking=not moved))
                        refresh, resent = refresh or moved, True
                    elif isinstance(reply, redis.exceptions.NoScriptError) and item.script:
                        yield LoadScript(node, item.script)
                        again.append(item)
                        resent = True
                    elif item.at == WAIT:
                        if resent:
                            again.append(item)
                        else:
                            acked = fewest(acked, reply if isinstance(reply, int) else 0)
                    else:
                        resent = False
                        refresh = refresh or isinstance(reply, CLUSTER_STATE_REPLIES)
                        _merge(replies, answered, item.at, reply)
            if refresh:
                yield Refresh()
            if not again:
                break
            pending = again
        else:
            for item in pending:
                replies[item.at] = StoreUnavailable(
                    f"the Redis Cluster kept redirecting {item.args[0]} after {REDIRECTS} tries"
                )
    return replies, acked


CLUSTER_STATE_REPLIES = (redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError)


def _merge(replies: list[Any], answered: list[bool], index: int, reply: Any) -> None:
    """A split command's replies are summed; its first error stands for all."""
    if not answered[index]:
        replies[index], answered[index] = reply, True
    elif isinstance(reply, Exception):
        if not isinstance(replies[index], Exception):
            replies[index] = reply
    elif not isinstance(replies[index], Exception):
        replies[index] += reply


def route(items: list[Item], nodes: Any) -> Round:
    """The items by the node that serves them: the one a redirect named, the primary of their
    slot, or the default node for a keyless command."""
    parts: Round = {}
    for item in items:
        node = None
        if item.target:
            host, _, port = item.target.rpartition(":")
            node = nodes.get_node(host=host, port=int(port))
        if node is None:
            node = nodes.default_node if item.slot is None else nodes.get_node_from_slot(item.slot)
        parts.setdefault(node.name, (node, []))[1].append(item)
    return parts


def unreachable(name: str, failed: Failed, items: list[Item]) -> StoreUnavailable:
    maybe = failed.sent and any(item.writes for item in items)
    text = f"Redis Cluster node {name} is unreachable: {failed.error}"
    if maybe:
        text += "; the write may have happened: load the conversation before retrying"
    error = StoreUnavailable(text)
    error.maybe_written = maybe
    error.__cause__ = failed.error
    return error


def packed(items: list[Item]) -> list[tuple[Any, ...]]:
    """The commands to send for ``items``: an ASKING before each that an ASK redirected."""
    commands: list[tuple[Any, ...]] = []
    for item in items:
        if item.asking:
            commands.append(("ASKING",))
        commands.append(item.args)
    return commands


def sent_error(error: Exception) -> bool:
    """Whether a connection error came after the commands may have reached the node."""
    if isinstance(error, redis.exceptions.MaxConnectionsError):
        return False
    return "connecting to" not in str(error)


def all_failed(result: tuple[list[Any], int | None]) -> tuple[list[Any], int | None]:
    """A batch none of whose nodes answered fails as a whole, as on one Redis: the error
    is raised (the store maps it)."""
    replies, _ = result
    if replies and all(isinstance(reply, StoreUnavailable) for reply in replies):
        cause = replies[0].__cause__
        if isinstance(cause, redis.ConnectionError | redis.TimeoutError):
            raise cause
    return result


class _Refresher:
    """When the slot map is read again: after a failure or a redirect, at most every
    REFRESH_EVERY seconds, and before the next batch when it could not be read then."""

    def __init__(self) -> None:
        self.stale = False
        self.read_at = 0.0

    def due(self, now: bool) -> bool:
        self.stale = True
        return not now or time.monotonic() - self.read_at >= REFRESH_EVERY

    def done(self) -> None:
        self.stale, self.read_at = False, time.monotonic()


def _unreadable(error: Exception) -> redis.exceptions.ClusterError:
    failure = redis.exceptions.ClusterError(f"its slot map cannot be read: {error}")
    failure.__cause__ = error
    return failure


class ClusterSender:
    """Sends the store's batches to a Redis Cluster, on a redis.cluster.RedisCluster (its
    nodes' pools: their connections never resend a command)."""

    def __init__(self, client: redis.cluster.RedisCluster) -> None:
        self.client = client
        self.refresher = _Refresher()

    def execute(self, batch: Batch, wait: Wait) -> tuple[list[Any], int | None]:
        """The replies of ``batch`` and the replicas that acknowledged its write script."""
        if self.refresher.stale:
            self._refresh(strict=True)
        if (scan := scan_request(batch)) is not None:
            return self._scan(*scan), None
        steps = exchange(plan(batch, wait), len(batch), self.client.nodes_manager)
        try:
            action = next(steps)
            while True:
                if isinstance(action, Refresh):
                    if self.refresher.due(now=True):
                        self._refresh(strict=False)
                    action = steps.send(None)
                elif isinstance(action, LoadScript):
                    node = self.client.get_redis_connection(action.node)
                    node.script_load(scripts.source(action.name))
                    action = steps.send(None)
                else:
                    action = steps.send(self._send(action))
        except StopIteration as done:
            return all_failed(done.value)

    def _refresh(self, *, strict: bool) -> None:
        try:
            self.client.nodes_manager.initialize()
        except (redis.RedisError, redis.exceptions.RedisClusterException) as e:
            if strict:
                raise _unreadable(e) from e
            return
        self.refresher.done()

    def _send(self, parts: Round) -> Results:
        """Write every node's part, then read each: one round trip to all of them."""
        results: Results = {}
        held = []
        try:
            for name, (node, items) in parts.items():
                redis_node: Any = self.client.get_redis_connection(node)
                try:
                    connection = redis_node.connection_pool.get_connection()
                except (redis.ConnectionError, redis.TimeoutError) as e:
                    results[name] = Failed(e, sent=False)
                    continue
                held.append((name, redis_node, connection, items))
                try:
                    connection.send_packed_command(connection.pack_commands(packed(items)))
                except (redis.ConnectionError, redis.TimeoutError) as e:
                    results[name] = Failed(e, sent_error(e))
            for name, redis_node, connection, items in held:
                if name not in results:
                    results[name] = _read(redis_node, connection, items)
        finally:
            for name, redis_node, connection, _ in held:
                if not isinstance(results.get(name), list):
                    connection.disconnect()  # unread replies would answer the next caller
                redis_node.connection_pool.release(connection)
        return results

    def _scan(self, cursor: int, match: Any, count: Any) -> list[Any]:
        shards = primaries_in_slot_order(self.client.nodes_manager)
        if cursor % SHARDS >= len(shards):
            return [(0, [])]
        node = self.client.get_redis_connection(shards[cursor % SHARDS])
        try:
            node_cursor, found = node.scan(cursor // SHARDS, match, count)
        except (redis.ConnectionError, redis.TimeoutError):
            self.refresher.due(now=False)
            raise
        return scan_reply(cursor, node_cursor, found, len(shards))


def _read(redis_node: Any, connection: Any, items: list[Item]) -> list[Any] | Failed:
    replies: list[Any] = []
    for item in items:
        try:
            if item.asking:
                redis_node.parse_response(connection, "ASKING")
            replies.append(redis_node.parse_response(connection, item.args[0], **item.options))
        except (redis.ConnectionError, redis.TimeoutError) as e:
            return Failed(e, sent=True)
        except redis.RedisError as e:
            replies.append(e)
    return replies


class AsyncClusterSender:
    """Sends the store's batches to a Redis Cluster, on a redis.asyncio.cluster.RedisCluster
    (its nodes' connections never resend a command); the nodes' parts are sent at once."""

    def __init__(self, client: redis.asyncio.cluster.RedisCluster) -> None:
        self.client = client
        self.refresher = _Refresher()

    async def execute(self, batch: Batch, wait: Wait) -> tuple[list[Any], int | None]:
        try:
            await self.client.initialize()
        except (redis.RedisError, redis.exceptions.RedisClusterException) as e:
            raise _unreadable(e) from e
        if self.refresher.stale:
            await self._refresh(strict=True)
        if (scan := scan_request(batch)) is not None:
            return await self._scan(*scan), None
        steps = exchange(plan(batch, wait), len(batch), self.client.nodes_manager)
        try:
            action = next(steps)
            while True:
                if isinstance(action, Refresh):
                    if self.refresher.due(now=True):
                        await self._refresh(strict=False)
                    action = steps.send(None)
                elif isinstance(action, LoadScript):
                    source = scripts.source(action.name)
                    await action.node.execute_command("SCRIPT", "LOAD", source)
                    action = steps.send(None)
                else:
                    action = steps.send(await self._send(action))
        except StopIteration as done:
            return all_failed(done.value)

    async def _refresh(self, *, strict: bool) -> None:
        try:
            await self.client.nodes_manager.initialize()
        except (redis.RedisError, redis.exceptions.RedisClusterException) as e:
            if strict:
                raise _unreadable(e) from e
            return
        self.refresher.done()

    async def _send(self, parts: Round) -> Results:
        names = list(parts)
        answers = await asyncio.gather(*(_send_part(*parts[name]) for name in names))
        return dict(zip(names, answers, strict=True))

    async def _scan(self, cursor: int, match: Any, count: Any) -> list[Any]:
        shards = primaries_in_slot_order(self.client.nodes_manager)
        if cursor % SHARDS >= len(shards):
            return [(0, [])]
        args = ("SCAN", cursor // SHARDS, "MATCH", match, "COUNT", count)
        try:
            node_cursor, found = await shards[cursor % SHARDS].execute_command(*args)
        except (redis.ConnectionError, redis.TimeoutError):
            self.refresher.due(now=False)
            raise
        return scan_reply(cursor, int(node_cursor), found, len(shards))


async def _send_part(node: Any, items: list[Item]) -> list[Any] | Failed:
    commands: list[Any] = []
    for item in items:
        if item.asking:
            commands.append(redis.asyncio.cluster.PipelineCommand(len(commands), "ASKING"))
        command = redis.asyncio.cluster.PipelineCommand(len(commands), *item.args, **item.options)
        commands.append(command)
    try:
        await node.execute_pipeline(commands)
    except (redis.ConnectionError, redis.TimeoutError) as e:
        return Failed(e, sent_error(e))
    replies = [command.result for command in commands if command.args[0] != "ASKING"]
    for reply in replies:
        if isinstance(reply, redis.ConnectionError | redis.TimeoutError):
            return Failed(reply, sent=True)
    return replies
