"""How a conversation's state sits in its hash: one field per top-level key (its codec bytes),
or, for a split key holding a dict, a marker and one field per sub-key (see keys.py).

Encoding, decoding and sizing those fields, for the core, the size breakdown and the
operations, and the merge of sub-keys into a key stored whole (a generator of the core's
protocol). Functions take the core (core.py), like legacy.py.
"""

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from convstore import keys as fields
from convstore.exceptions import CorruptSession, SessionNotFound, StaleRevision
from convstore.protocol import (
    Batch,
    Command,
    Core,
    Operation,
    Session,
    ask,
    int_field,
    text_field,
)

NOT_STATE = frozenset({"history", "bot_config", "_rev", "_turns"})
"""Keys of a session that are not state: the turns and the bot_config are stored apart, and
`load` adds ``_rev`` and ``_turns``."""
_STATE, _SPLIT, _DOC = (p.encode() for p in (fields.STATE_PREFIX, fields.SPLIT_PREFIX, fields.DOC))


type Merge = Mapping[str, Mapping[Any, Any]]
"""update_state's ``merge``: {split key: {sub-key: value}}, the sub-keys written alone."""


class Shape(NamedTuple):
    """What this process last saw of a conversation: its rev, next seq, state field sizes and
    bot_config digest."""

    rev: int | None
    seq: int
    sizes: dict[bytes, int]
    digest: str | None


def state_of(session: Mapping[str, Any]) -> dict[str, Any]:
    """The state keys of a session (or of the changes of an update)."""
    return {k: v for k, v in session.items() if k not in NOT_STATE}


def check_split_keys(split_keys: Iterable[str]) -> frozenset[str]:
    """The ``split_keys`` option: top-level state keys, named as strings."""
    if isinstance(split_keys, str):
        raise TypeError(f"split_keys must be a tuple of key names, not the string {split_keys!r}")
    checked = frozenset(split_keys)
    for name in checked:
        if not isinstance(name, str) or not name or name in NOT_STATE:
            raise ValueError(f"split_keys: {name!r} is not a top-level state key")
    return checked


def is_state_field(field: bytes) -> bool:
    """Whether a state hash field holds state (a top-level key's value or marker, or a
    sub-key's value)."""
    return field.startswith((_STATE, _SPLIT))


def encode_state(core: Core, state: Mapping[str, Any]) -> dict[str, bytes]:
    """{state hash field: value} of ``state``: a split key holding a dict as its marker and
    one field per sub-key, any other value whole."""
    encoded: dict[str, bytes] = {}
    for name, value in state.items():
        if name in core.split_keys and isinstance(value, dict):
            encoded[fields.state_field(name)] = fields.SPLIT_MARKER
            encoded.update(encode_sub_keys(core, name, value))
        else:
            encoded[fields.state_field(name)] = core.codec.encode(value)
    return encoded


def encode_sub_keys(core: Core, name: str, value: Mapping[Any, Any]) -> dict[str, bytes]:
    """{field: value} of the sub-keys of the split key ``name``; a sub-key that is no str is
    named as JSON names it (1 -> "1", True -> "true"), as when the dict is encoded whole."""
    encoded = {}
    for sub, item in value.items():
        text = sub if isinstance(sub, str) else _json_key(core, sub)
        encoded[fields.split_field(name, text)] = core.codec.encode(item)
    return encoded


def _json_key(core: Core, key: object) -> str:
    serializer = core.codec.serializer
    (text,) = serializer.loads(serializer.dumps({key: None}))
    return str(text)


def decode_state(core: Core, key: str, state: dict[bytes, bytes]) -> tuple[Session, Shape]:
    """(session without history, Shape) of a state hash as HGETALL returned it. A split key
    comes back as the dict it was, its sub-keys perhaps in another order."""
    rev = int_field(key, fields.REV, state.get(fields.REV.encode()))
    seq = int_field(key, fields.SEQ, state.get(fields.SEQ.encode()))
    raw_digest = state.get(fields.CFG.encode())
    digest = text_field(key, fields.CFG, raw_digest) if raw_digest else None
    doc = state.get(_DOC)
    if doc is not None:
        return core.decode_object(key, doc), Shape(rev, seq, {}, digest)
    session: Session = {}
    sizes: dict[bytes, int] = {}
    split: dict[str, dict[str, Any]] = {}
    for name, raw in state.items():
        if name.startswith(_STATE):
            sizes[name] = len(raw)
            top = _text(key, name)[len(fields.STATE_PREFIX) :]
            if raw == fields.SPLIT_MARKER:
                session[top] = split.setdefault(top, {})
            else:
                session[top] = core.decode_value(key, raw)
        elif name.startswith(_SPLIT):
            sizes[name] = len(raw)
            top, sub = _split_name(key, name)
            split.setdefault(top, {})[sub] = core.decode_value(key, raw)
    for top, value in split.items():
        if session.get(top) is not value:
            raise CorruptSession(key, f"the split key {top!r} has sub-key fields but no marker")
    return session, Shape(rev, seq, sizes, digest)


def check_merge(core: Core, changes: Mapping[str, Any], merge: Merge) -> Merge:
    """update_state's ``merge``, checked against its ``changes``."""
    for name, sub_keys in merge.items():
        if name not in core.split_keys:
            known = sorted(core.split_keys)
            raise ValueError(f"merge: {name!r} is not one of the store's split_keys {known}")
        if name in changes:
            raise ValueError(f"{name!r} is both in changes and in merge: give it once")
        if not isinstance(sub_keys, Mapping):
            kind = type(sub_keys).__qualname__
            raise TypeError(f"merge[{name!r}] must be a dict of sub-keys, got {kind}")
    return merge


def merged(
    core: Core, cid: str, name: str, sub_keys: Mapping[Any, Any], expected_rev: int
) -> Operation[dict[Any, Any]]:
    """The value of ``name`` stored whole (or missing: {}) with ``sub_keys`` merged in,
    read at ``expected_rev``: StaleRevision when the rev moved, so no update is lost."""
    key = core.keys.state(cid)
    batch: Batch = [Command("hmget", (key, fields.REV, fields.state_field(name)), key)]
    ((raw_rev, raw),) = yield from ask(batch)
    if raw_rev is None:
        raise SessionNotFound(cid)
    rev = int_field(key, fields.REV, raw_rev)
    if rev != expected_rev:
        core.forget(cid)
        raise StaleRevision(cid, expected_rev, rev)
    value = {} if raw is None else core.decode_value(key, raw)
    if not isinstance(value, dict):
        kind = type(value).__name__
        raise TypeError(f"cannot merge into {name!r} of {cid!r}: it holds a {kind}, not a dict")
    return {**value, **sub_keys}


def state_delta(
    shape: Shape | None,
    expected_rev: int,
    encoded: dict[str, bytes],
    dropped: tuple[bytes, ...],
    whole: bool,
) -> int | None:
    """How the state's bytes change, from the sizes this process last saw (fields starting
    with one of ``dropped`` go unless written); None if unknown."""
    if shape is None or shape.rev != expected_rev:
        return None
    new = {name.encode(): len(value) for name, value in encoded.items()}
    if whole:
        return sum(new.values()) - sum(shape.sizes.values())
    old = [size for name, size in shape.sizes.items() if name in new or name.startswith(dropped)]
    return sum(new.values()) - sum(old)


def key_sizes(sizes: Mapping[bytes, int]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """From {state hash field: bytes}: the bytes of each top-level state key as stored (a split
    key's, its sub-keys' together), and {split key: {sub-key: bytes}}."""
    tops: dict[str, int] = {}
    split: dict[str, dict[str, int]] = {}
    for name, size in sizes.items():
        if name.startswith(_STATE):
            top = name[len(_STATE) :].decode()
            tops[top] = tops.get(top, 0) + size
        elif name.startswith(_SPLIT):
            top, sub = fields.parse_split_field(name.decode())
            tops[top] = tops.get(top, 0) + size
            split.setdefault(top, {})[sub] = size
    return tops, split


def _text(key: str, name: bytes) -> str:
    try:
        return name.decode()
    except UnicodeDecodeError:
        raise CorruptSession(key, f"a state field name is not UTF-8: {name!r}") from None


def _split_name(key: str, name: bytes) -> tuple[str, str]:
    try:
        return fields.parse_split_field(_text(key, name))
    except ValueError as e:
        raise CorruptSession(key, str(e)) from None
