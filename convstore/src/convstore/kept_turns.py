"""A loaded dict written back: its turns that carry a seq are stored already, and `save` writes
only the others. This checks that none of those was edited or removed, so that no change to
them is dropped silently.

The loaded turns are the contiguous seqs from the oldest one in the dict to ``_turns`` (what
the load saw): that range is read back in one round trip and compared, byte for byte when the
codec writes the turn as it was stored. Turns older than the dict's oldest were not loaded and
are not looked at. A generator of the core's protocol (core.py), taking the core, like
legacy.py.
"""

from typing import Any

from convstore import keys as fields
from convstore import legacy
from convstore.codec import split_turn_item
from convstore.exceptions import CodecError, CorruptSession
from convstore.protocol import (
    ArchiveRead,
    Batch,
    Command,
    Core,
    Operation,
    Session,
    Turn,
    ask,
    int_field,
    text_field,
)

type Stored = dict[int, tuple[str, bytes | Turn]]
"""{seq: (the key it is stored at, or "archive"; its codec bytes, or the turn decoded)}"""


def check_unchanged(core: Core, cid: str, session: Session) -> Operation[None]:
    """Raise ValueError naming the first stored turn the dict edited or removed."""
    kept = kept_turns(session.get("history") or [])
    if not kept:
        return
    first = min(kept)
    end = session.get("_turns")
    if not isinstance(end, int) or isinstance(end, bool) or end <= max(kept):
        end = max(kept) + 1
    stored = yield from stored_turns(core, cid, first, end)
    if stored is None:
        return  # no such conversation: the write itself says so
    for seq in sorted(kept.keys() | stored.keys()):
        turn, entry = kept.get(seq), stored.get(seq)
        if turn is None:
            raise ValueError(
                f"turn seq {seq} of conversation {cid!r} was removed from the loaded history: "
                "save() never removes stored turns"
            )
        if entry is None:
            raise ValueError(
                f"turn seq {seq} of conversation {cid!r} is not a stored turn: "
                "a new turn carries no seq"
            )
        key, was = entry
        if not same_turn(core, key, was, turn):
            raise ValueError(
                f"turn seq {seq} of conversation {cid!r} differs from the stored turn: "
                "save() writes only new turns (without a seq), it never edits a stored one"
            )


def kept_turns(history: list[Any]) -> dict[int, Turn]:
    """{seq: turn without its seq} of the turns that carry one."""
    kept: dict[int, Turn] = {}
    for turn in history:
        if not isinstance(turn, dict) or "seq" not in turn:
            continue
        seq = turn["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError(f"a turn's seq must be an integer >= 0, got {seq!r}")
        if seq in kept:
            raise ValueError(f"turn seq {seq} appears twice in the history")
        kept[seq] = {k: v for k, v in turn.items() if k != "seq"}
    return kept


def stored_turns(core: Core, cid: str, first: int, end: int) -> Operation[Stored | None]:
    """{seq: (key, stored payload bytes or turn)} of the turns stored from ``first`` to ``end``
    (Redis, then the archive, or a legacy blob); None when the conversation is not stored."""
    state_key, turns_key = core.keys.state(cid), core.keys.turns(cid)
    span = end - first
    while True:
        # The list holds seqs in order, so the turns from `first` on are its last (next seq -
        # first) items. LRANGE goes first: a turn appended after the HMGET read is not missed.
        batch: Batch = [
            Command("lrange", (turns_key, -span, -1), turns_key),
            Command("hmget", (state_key, fields.SEQ, fields.ARCHIVED, fields.INC), state_key),
        ]
        items, (next_seq, archived, incarnation) = yield from ask(batch)
        if next_seq is None:
            return (yield from legacy_turns(core, cid, first, end))
        next_seq = int_field(state_key, fields.SEQ, next_seq)
        if next_seq - first <= span:
            break
        span = next_seq - first  # turns were appended since the load: read further back
    stored: Stored = {}
    for item in items:
        try:
            seq, payload = split_turn_item(item)
        except CodecError as e:
            raise CorruptSession(turns_key, e) from e
        if first <= seq < end:
            stored[seq] = (turns_key, payload)
    if len(stored) < end - first and archived not in (None, b"0"):
        incarnation = text_field(state_key, fields.INC, incarnation)
        for turn in (yield ArchiveRead(cid, incarnation, first)):
            seq = turn.pop("seq")
            if seq < end:
                stored.setdefault(seq, ("archive", turn))
    return stored


def legacy_turns(core: Core, cid: str, first: int, end: int) -> Operation[Stored | None]:
    """The legacy blob's turns from ``first`` to ``end``; None when there is no blob."""
    raw = (yield from legacy.legacy_blob(core, cid)) if core.legacy_reads else None
    if raw is None:
        return None
    history = legacy.decode_legacy(core, cid, raw).get("history") or []
    key = core.keys.legacy(cid)
    return {seq: (key, turn) for seq, turn in enumerate(history) if first <= seq < end}


def same_turn(core: Core, key: str, stored: bytes | Turn, turn: Turn) -> bool:
    """Whether ``turn`` is what is stored: its codec bytes, or a turn decoded already."""
    if isinstance(stored, bytes):
        try:
            if core.codec.encode(turn) == stored:
                return True
        except CodecError:
            return False
        # Other bytes for the same value: written compressed, or by another codec setting.
        stored = core.decode_object(key, stored)
    if isinstance(stored, dict):
        stored = {k: v for k, v in stored.items() if k != "seq"}
    return stored == turn
