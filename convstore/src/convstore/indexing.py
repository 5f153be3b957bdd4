"""What goes beside each write of a conversation, and what its failure means.

A write script is sent with the commands that keep the indexes and the shared bot_config in
step (the seen and bytes indexes, the bot_config and its TTL), in one round trip. The script's
reply alone decides the call's result; the commands beside it that fail are drift: logged,
counted in the core's ``drift``, retried once, and repaired by the next index rebuild. Each
function is a generator of the core's protocol, taking the core (core.py).
"""

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from convstore.exceptions import StoreError, StoreUnavailable
from convstore.protocol import (
    NOT_FOUND,
    OK,
    Batch,
    Command,
    Core,
    Operation,
    Script,
    key_of,
    raise_for,
)

log = logging.getLogger(__name__)


def write(
    core: Core,
    cid: str,
    script: Script,
    predicted: int | None,
    delta: Callable[[list[Any]], int],
    before: Sequence[Command] = (),
    digest: str | None = None,
) -> Operation[list[Any]]:
    """Run a conversation's write script with what goes beside it, in one round trip.

    The script's reply alone decides the call's result. Beside it go ``before`` (the shared
    bot_config it names), its time in the seen index, its bytes in the bytes index, moved
    by ``predicted`` (None: not known yet), and the TTL of the bot_config ``digest`` names.
    A second round trip, only when needed, corrects the bytes index by what
    ``delta(reply)`` says it moved and retries what failed beside the script: a failure
    there is drift (see `follow_up`), never the caller's error.
    """
    index = index_commands(core, cid, predicted)
    if digest and core.ttl:
        index.append(Command("expire", (core.keys.bot_config(digest), core.ttl)))
    batch: Batch = [*before, script, *index]
    replies = yield batch
    at = len(before)
    bumped = index[1] if predicted else None
    moved = predicted if predicted and _ok(replies[at + 2]) else 0
    reply: list[Any]
    try:
        (reply,) = yield from raise_for(replies[at : at + 1], [script])
    except StoreError:
        if moved:  # the write did not happen: neither does its move of the index
            yield from follow_up(core, cid, [bump(core, cid, -moved)])
        raise
    if reply[0] == NOT_FOUND:
        # The index commands ran for a conversation that is not there: take them back.
        core.forget(cid)
        yield from follow_up(
            core,
            cid,
            [
                Command("zrem", (core.keys.index_bytes, cid)),
                Command("zrem", (core.keys.index_seen, cid)),
            ],
        )
        return reply
    failed = [
        (request, answer)
        for request, answer in zip(batch, replies, strict=True)
        if not _ok(answer) and request is not script and request is not bumped
    ]
    drifted(core, cid, failed)
    again: Batch = [request for request, _ in failed]
    actual = delta(reply) if reply[0] == OK else 0
    if actual != moved:
        again.append(Command("zincrby", (core.keys.index_bytes, actual - moved, cid)))
    if again:
        yield from follow_up(core, cid, again)
    return reply


def follow_up(core: Core, cid: str, batch: Batch) -> Operation[None]:
    """Send index (and shared bot_config) commands that follow a write that happened.

    Their failure is drift: logged with the key, counted in ``drift``, and repaired by
    the next index rebuild (`compact_sessions --rebuild-indexes`, the scheduled
    compaction); the write's caller is never told it failed.
    """
    try:
        replies = yield batch
    except StoreUnavailable as e:
        replies = [e] * len(batch)
    drifted(core, cid, zip(batch, replies, strict=True))


def drifted(core: Core, cid: str, answered: Iterable[tuple[Command | Script, Any]]) -> None:
    """Log and count each (request, reply) of ``answered`` whose reply is an error."""
    for request, reply in answered:
        if _ok(reply):
            continue
        with core._lock:
            core.drift += 1
        log.warning(
            "index drift: %s on %r for conversation %r failed after its write: %s",
            request.name,
            key_of(request),
            cid,
            reply,
        )


def index_commands(core: Core, cid: str, predicted: int | None = None) -> list[Command]:
    """The index updates that go beside a write: its time, and its predicted bytes."""
    index = [Command("zadd", (core.keys.index_seen, {cid: time.time()}))]
    if predicted:
        index.append(bump(core, cid, predicted))
    return index


def bump(core: Core, cid: str, delta: int) -> Command:
    """Move an indexed conversation's bytes; one not in the index stays out of it."""
    return Command("zadd", (core.keys.index_bytes, {cid: delta}, False, True, False, True))


def _ok(reply: object) -> bool:
    return not isinstance(reply, Exception)
