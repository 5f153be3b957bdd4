"""What the store's core asks of Redis, and how a reply becomes the store's error.

A request is a batch of Commands and Scripts, sent in one round trip, or an ArchiveRead. The
argument checks shared by every call are here too.
"""

import threading
from collections.abc import Generator, Iterable
from typing import Any, Literal, NamedTuple, Protocol, TypedDict

from convstore.codec import Codec
from convstore.exceptions import CorruptSession, StoreError, StoreFull, StoreUnavailable
from convstore.keys import KeyLayout

type Session = dict[str, Any]
"""A conversation as the robot uses it: its state keys, ``history`` and ``bot_config``."""
type Turn = dict[str, Any]
"""One turn of a history, with its ``seq`` when it is stored."""
type Batch = list[Command | Script]
"""Commands and scripts sent in one round trip; their replies come back in order."""
type Request = Batch | ArchiveRead
"""What an operation of the core yields: it is sent a batch's replies (error replies as
values) or the archived turns."""
type Operation[T] = Generator[Request, Any, T]
"""An operation of the core, whose result is a T (see core.py)."""

# LRANGE takes a 64-bit index; no conversation has anywhere near this many turns.
MAX_WINDOW = 2**53
# A counter of a state hash (rev, seq, bytes, archived): a Lua number holds it exactly.
MAX_COUNT = 2**53
# What a write script's reply starts with (see lua/*.lua).
OK, NOT_FOUND, STALE, ONE_DOC, EXISTS, NOT_SPLIT = 0, 1, 2, 3, 4, 5
# What may change Redis: a batch holding one of these is a write.
WRITE_COMMANDS = frozenset({"delete", "expire", "set", "zadd", "zincrby", "zrem"})
READ_ONLY_SCRIPTS = frozenset({"field_sizes", "trim_head", "trim_measure"})
# Error replies of a Redis that cannot take the command now (redis-py's class names, or the
# code that starts the message): loading after a restart, a replica, a primary without its
# replicas, a cluster moving or down, a script running too long.
UNAVAILABLE_REPLIES = frozenset(
    {"BusyLoadingError", "ReadOnlyError", "MasterDownError", "ClusterDownError", "TryAgainError"}
)
UNAVAILABLE_CODES = ("BUSY ", "NOREPLICAS ", "LOADING ", "READONLY ", "MASTERDOWN ")


class Command(NamedTuple):
    """A redis-py command: ``name(*args)``, reading or writing ``key`` (named in errors)."""

    name: str
    args: tuple[Any, ...]
    key: str | None = None


class Script(NamedTuple):
    """One of the Lua scripts of scripts.py, run with ``keys`` and ``args``."""

    name: str
    keys: list[str]
    args: list[Any]


class ArchiveRead(NamedTuple):
    """The archived turns of one incarnation of a conversation from ``from_seq`` on, oldest
    first."""

    conversation_id: str
    incarnation: str
    from_seq: int


def check_window(window: object) -> int | None:
    if window is None:
        return None
    if not isinstance(window, int) or isinstance(window, bool) or window < 0:
        raise ValueError(f"window must be None or an integer >= 0, got {window!r}")
    return min(window, MAX_WINDOW)


def check_rev(expected_rev: object) -> int:
    if not isinstance(expected_rev, int) or isinstance(expected_rev, bool):
        raise TypeError(f"expected_rev must be an int, got {expected_rev!r}")
    return expected_rev


def int_field(key: str, name: str, raw: object) -> int:
    """A state hash field read as a count: decimal digits from 0 to MAX_COUNT, as the scripts
    accept it (lua/prelude.lua number_field); CorruptSession when it is missing or not one."""
    if type(raw) is int:
        value = raw
    elif isinstance(raw, bytes) and raw.isdigit() and len(raw) <= 16:
        value = int(raw)
    else:
        value = -1
    if not 0 <= value <= MAX_COUNT:
        reason = f"field {name!r} is not an integer from 0 to 2**53: {raw!r}"
        raise CorruptSession(key, reason)
    return value


def text_field(key: str, name: str, raw: bytes | None) -> str:
    """A state hash field read as text ('' when missing); CorruptSession when it is not UTF-8."""
    try:
        return (raw or b"").decode()
    except UnicodeDecodeError:
        raise CorruptSession(key, f"field {name!r} is not UTF-8 text: {raw!r}") from None


def writes(batch: Batch) -> bool:
    """Whether sending ``batch`` may change what Redis holds."""
    return any(
        request.name not in READ_ONLY_SCRIPTS
        if isinstance(request, Script)
        else request.name in WRITE_COMMANDS
        for request in batch
    )


def refused(error: Exception, what: str) -> StoreError | None:
    """The store's error for an error reply that is about Redis, not the data: StoreFull when
    it is out of memory, StoreUnavailable when it cannot serve now; None for the others.
    ``what`` names the refused request in the message. A StoreUnavailable already made (a
    Redis Cluster node that did not answer) is itself."""
    if isinstance(error, StoreUnavailable):
        return error
    kind = type(error).__name__
    if kind == "OutOfMemoryError" or str(error).startswith("OOM"):
        return StoreFull(
            f"Redis is full (maxmemory reached) and refused {what}; "
            "nothing was written. Trim, compact or delete sessions, or raise maxmemory"
        )
    if kind in UNAVAILABLE_REPLIES or str(error).startswith(UNAVAILABLE_CODES):
        return StoreUnavailable(f"Redis cannot serve {what} now: {error}")
    return None


def key_of(request: Command | Script) -> str:
    """The key ``request`` is about, for messages."""
    if isinstance(request, Script):
        return request.keys[0]
    return request.key or request.args[0]


def script_error(error: Exception, keys: list[str]) -> Exception:
    """The store's error for a script's BADTYPE/BADFIELD reply (see lua/prelude.lua)."""
    code, _, detail = str(error).partition(" ")
    if code == "BADTYPE":
        index, got = detail.split()[:2]
        reason = f"holds a {got}, not what the store keeps there"
        return CorruptSession(keys[int(index) - 1], reason)
    if code == "BADFIELD":
        return CorruptSession(keys[0], f"field {detail.split()[0]!r} is not an integer")
    return error


def send(batch: Batch) -> Operation[list[Any]]:
    """Send ``batch``; its replies, error replies as values."""
    replies: list[Any] = yield batch
    return replies


def ask(batch: Batch) -> Operation[list[Any]]:
    """Send ``batch``; its replies, an error reply raised as the store's error."""
    replies = yield batch
    return (yield from raise_for(replies, batch))


def raise_for(replies: list[Any], batch: Batch) -> Operation[list[Any]]:
    """``replies`` of ``batch``; the first error reply becomes the store's error, naming its
    key (a WRONGTYPE costs one TYPE, to say what the key holds)."""
    for reply, request in zip(replies, batch, strict=True):
        if not isinstance(reply, Exception):
            continue
        if (error := refused(reply, f"{request.name} on {key_of(request)!r}")) is not None:
            raise error
        if isinstance(request, Script):
            raise script_error(reply, request.keys)
        if str(reply).startswith("WRONGTYPE") and request.key:
            (got,) = yield [Command("type", (request.key,))]
            reason = f"holds a {got.decode()}, not what the store keeps there"
            raise CorruptSession(request.key, reason)
        raise StoreError(f"Redis refused {request.name}: {reply}")
    return replies


class SizeBreakdown(TypedDict):
    """The bytes of each part of a conversation as stored (``size_breakdown``)."""

    layout: Literal["split", "legacy"]
    state: int
    fields: dict[str, int]
    split: dict[str, dict[str, int]]
    """{split key: {sub-key: bytes}} of the keys stored split."""
    record: int
    history: int
    bot_config: int
    turns: int
    total_turns: int
    archived: int
    ttl: int | None


class Archive(Protocol):
    """Where turns trimmed from Redis went (the stores' ``archive``): the turns of one
    incarnation of a conversation from ``from_seq`` on, oldest first, each with its ``seq``."""

    def turns(
        self, conversation_id: str, incarnation: str, /, *, from_seq: int
    ) -> Iterable[Turn]: ...

    async def aturns(
        self, conversation_id: str, incarnation: str, /, *, from_seq: int
    ) -> Iterable[Turn]: ...


class Core(Protocol):
    """What the core's helpers (indexing.py, legacy.py, kept_turns.py) use of the core: they
    take it (core.StoreCore) as an argument, and cannot import it, as it imports them."""

    keys: KeyLayout
    codec: Codec
    ttl: int
    legacy_reads: bool
    split_keys: frozenset[str]
    drift: int
    _lock: threading.Lock

    def forget(self, cid: str) -> None: ...

    def decode_value(self, key: str, raw: bytes) -> Any: ...

    def decode_object(self, key: str, raw: bytes) -> dict[str, Any]: ...

    def replace(
        self, cid: str, session: Session, *, initial_rev: int, create_only: bool = False
    ) -> Operation[int | None]: ...
