"""The layouts before this one, read transparently and moved on: the robot's JSON blob (a
legacy key per conversation), and the first release's state stored as one ``doc`` field.

Each function is a generator of the core's protocol, taking the core (core.py).
"""

from collections.abc import Callable

from convstore import indexing
from convstore import keys as fields
from convstore.codec import without_non_finite
from convstore.exceptions import CorruptSession, SessionNotFound
from convstore.protocol import (
    Batch,
    Command,
    Core,
    Operation,
    Script,
    Session,
    SizeBreakdown,
    ask,
)
from convstore.state_fields import encode_state


def load_legacy(
    core: Core, cid: str, window: int | None, phase: Callable[[str], None]
) -> Operation[Session | None]:
    if not core.legacy_reads:
        return None
    raw = yield from legacy_blob(core, cid)
    if raw is None:
        return None
    phase("decode")
    session = decode_legacy(core, cid, raw)
    phase("assemble")
    history = session.get("history") or []
    for seq, turn in enumerate(history):
        turn["seq"] = seq
    session["history"] = history if window is None else history[len(history) - window :]
    session["_rev"] = 0
    session["_turns"] = len(history)
    return session


def legacy_blob(core: Core, cid: str) -> Operation[bytes | None]:
    key = core.keys.legacy(cid)
    batch: Batch = [Command("get", (key,), key)]
    raw: bytes | None
    (raw,) = yield from ask(batch)
    return raw


def decode_legacy(core: Core, cid: str, raw: bytes) -> Session:
    # NaN and Infinity, which the stdlib wrote and orjson cannot, read as None.
    key = core.keys.legacy(cid)
    session: Session = without_non_finite(core.decode_object(key, raw))
    history = session.get("history")
    if history is not None and not isinstance(history, list):
        kind = type(history).__name__
        raise CorruptSession(key, f"its history is a {kind}, not a list of turns")
    for seq, turn in enumerate(history or []):
        if not isinstance(turn, dict):
            kind = type(turn).__name__
            raise CorruptSession(key, f"turn {seq} of its history is a {kind}, not an object")
    session.setdefault("conversation_id", cid)
    return session


def legacy_breakdown(core: Core, cid: str) -> Operation[SizeBreakdown]:
    raw = (yield from legacy_blob(core, cid)) if core.legacy_reads else None
    if raw is None:
        raise SessionNotFound(cid)
    session = decode_legacy(core, cid, raw)
    history = session.get("history") or []
    encoded_history = core.codec.encode(history)
    bot_config = core.codec.encode(session.get("bot_config"))
    return {
        "layout": "legacy",
        "state": len(raw) - len(encoded_history) - len(bot_config),
        "fields": {},
        "split": {},
        "record": len(core.codec.encode(session.get("record"))),
        "history": len(encoded_history),
        "bot_config": len(bot_config),
        "turns": len(history),
        "total_turns": len(history),
        "archived": 0,
        "ttl": None,
    }


def migrate(core: Core, cid: str) -> Operation[int]:
    """Move a legacy blob to the split layout; the bytes of the blob moved (0: none)."""
    if not core.legacy_reads:
        return 0
    raw = yield from legacy_blob(core, cid)
    if raw is None:
        return 0
    moved = yield from migrate_blob(core, cid, raw)
    return len(raw) if moved else 0


def migrate_blob(core: Core, cid: str, raw: bytes | None = None) -> Operation[bool]:
    """Write a legacy blob in the split layout, then drop the blob if it is unchanged.

    The split layout is written only where there is none: a conversation another process
    moved meanwhile is left as that process wrote it. Revision 0 is what `load` reported.
    """
    if raw is None:
        if not core.legacy_reads:
            return False
        raw = yield from legacy_blob(core, cid)
        if raw is None:
            return False
    session = decode_legacy(core, cid, raw)
    key = core.keys.legacy(cid)
    bot_config = session.get("bot_config")
    if bot_config is not None and not isinstance(bot_config, dict):
        # The split layout could never load it back: the blob stays for an operator.
        reason = f"its bot_config is a {type(bot_config).__qualname__}, not a JSON object"
        raise CorruptSession(key, reason)
    yield from core.replace(cid, session, initial_rev=0, create_only=True)
    batch: Batch = [Script("drop_if_unchanged", [key], [raw])]
    yield from ask(batch)
    return True


def split_doc(core: Core, cid: str) -> Operation[None]:
    """Store a first-release state (one doc) as one field per key, if it is unchanged."""
    state_key = core.keys.state(cid)
    batch: Batch = [Command("hget", (state_key, fields.DOC), state_key)]
    (doc,) = yield from ask(batch)
    if doc is None:
        return
    state = core.decode_object(state_key, doc)
    args: list[bytes | str] = [doc]
    for pair in encode_state(core, state).items():
        args += pair
    batch = [Script("split_doc", [state_key], args)]
    (delta,) = yield from ask(batch)
    if delta:
        yield from indexing.follow_up(
            core, cid, [Command("zincrby", (core.keys.index_bytes, delta, cid))]
        )
