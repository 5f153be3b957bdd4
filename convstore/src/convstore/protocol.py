"""What the store's core asks of Redis, and how a reply becomes the store's error.

A request is a batch of Commands and Scripts, sent in one round trip, or an ArchiveRead. The
argument checks shared by every call are here too.
"""

from typing import NamedTuple

from convstore.exceptions import CorruptSession, StoreError, StoreFull, StoreUnavailable

# LRANGE takes a 64-bit index; no conversation has anywhere near this many turns.
MAX_WINDOW = 2**53
# A counter of a state hash (rev, seq, bytes, archived): a Lua number holds it exactly.
MAX_COUNT = 2**53
# What a write script's reply starts with (see lua/*.lua).
OK, NOT_FOUND, STALE, ONE_DOC, EXISTS = 0, 1, 2, 3, 4
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
    args: tuple
    key: str | None = None


class Script(NamedTuple):
    """One of the Lua scripts of scripts.py, run with ``keys`` and ``args``."""

    name: str
    keys: list
    args: list


class ArchiveRead(NamedTuple):
    """The archived turns of one incarnation of a conversation from ``from_seq`` on, oldest
    first."""

    conversation_id: str
    incarnation: str
    from_seq: int


def check_window(window):
    if window is None:
        return None
    if not isinstance(window, int) or isinstance(window, bool) or window < 0:
        raise ValueError(f"window must be None or an integer >= 0, got {window!r}")
    return min(window, MAX_WINDOW)


def check_rev(expected_rev):
    if not isinstance(expected_rev, int) or isinstance(expected_rev, bool):
        raise TypeError(f"expected_rev must be an int, got {expected_rev!r}")
    return expected_rev


def int_field(key, name, raw):
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


def text_field(key, name, raw):
    """A state hash field read as text ('' when missing); CorruptSession when it is not UTF-8."""
    try:
        return (raw or b"").decode()
    except UnicodeDecodeError:
        raise CorruptSession(key, f"field {name!r} is not UTF-8 text: {raw!r}") from None


def writes(batch):
    """Whether sending ``batch`` may change what Redis holds."""
    return any(
        request.name not in READ_ONLY_SCRIPTS
        if isinstance(request, Script)
        else request.name in WRITE_COMMANDS
        for request in batch
    )


def refused(error, request):
    """The store's error for an error reply that is about Redis, not the data: StoreFull when
    it is out of memory, StoreUnavailable when it cannot serve now; None for the others."""
    kind = type(error).__name__
    where = request.keys[0] if isinstance(request, Script) else request.key or request.args[0]
    if kind == "OutOfMemoryError" or str(error).startswith("OOM"):
        return StoreFull(
            f"Redis is full (maxmemory reached) and refused {request.name} on {where!r}; "
            "nothing was written. Trim, compact or delete sessions, or raise maxmemory"
        )
    if kind in UNAVAILABLE_REPLIES or str(error).startswith(UNAVAILABLE_CODES):
        return StoreUnavailable(f"Redis cannot serve {request.name} on {where!r} now: {error}")
    return None


def script_error(error, keys):
    """The store's error for a script's BADTYPE/BADFIELD reply (see lua/prelude.lua)."""
    code, _, detail = str(error).partition(" ")
    if code == "BADTYPE":
        index, got = detail.split()[:2]
        reason = f"holds a {got}, not what the store keeps there"
        return CorruptSession(keys[int(index) - 1], reason)
    if code == "BADFIELD":
        return CorruptSession(keys[0], f"field {detail.split()[0]!r} is not an integer")
    return error


def send(batch):
    """Send ``batch``; its replies, error replies as values."""
    return (yield batch)


def ask(batch):
    """Send ``batch``; its replies, an error reply raised as the store's error."""
    replies = yield batch
    return (yield from raise_for(replies, batch))


def raise_for(replies, batch):
    """``replies`` of ``batch``; the first error reply becomes the store's error, naming its
    key (a WRONGTYPE costs one TYPE, to say what the key holds)."""
    for reply, request in zip(replies, batch, strict=True):
        if not isinstance(reply, Exception):
            continue
        if (error := refused(reply, request)) is not None:
            raise error
        if isinstance(request, Script):
            raise script_error(reply, request.keys)
        if str(reply).startswith("WRONGTYPE") and request.key:
            (got,) = yield [Command("type", (request.key,))]
            reason = f"holds a {got.decode()}, not what the store keeps there"
            raise CorruptSession(request.key, reason)
        raise StoreError(f"Redis refused {request.name}: {reply}")
    return replies
