"""Redis reads for the sessions admin: the rows of a page, the parts of one session, and a
session written out as the old robot's single JSON blob (the pages of the index sorted sets
themselves are read by indexes.py).

Each takes the store and reads through pipelines: a page costs a few round trips whatever the
number of sessions, and decodes only the sessions it shows. Keys come from `store.keys` only.
"""

import json
import uuid
from dataclasses import dataclass, field

from convstore import legacy
from convstore.exceptions import CorruptSession, SessionNotFound
from convstore.keys import ARCHIVED, BYTES, DOC, STATE_PREFIX
from convstore.protocol import Command, int_field
from convstore.state_fields import key_sizes
from sessions_app import indexes, maintenance

LAST_TURNS = 50
DOC_FIELD, PREFIX = DOC.encode(), STATE_PREFIX.encode()


@dataclass(frozen=True, kw_only=True)
class SessionRow:
    """One session as the list shows it. ``layout``: split, legacy, gone, undecodable, or
    "bad entry" (an index member that names no conversation, shown as text)."""

    conversation_id: str
    layout: str
    bot_id: str = ""
    user_id: str = ""
    turns: int | None = None
    archived: int | None = None
    bytes: int = 0
    ttl: int | None = None
    """Seconds left; None when the key never expires."""
    seen: float | None = None
    seen_problem: str = ""
    """Why its score in the seen index is no time, when it is not (``seen`` is then None)."""
    problem: str = ""
    key: str = ""


@dataclass(kw_only=True)
class SessionParts:
    """Where one session's bytes are, and what the detail page shows of it."""

    conversation_id: str
    layout: str
    key: str
    problem: str = ""
    bytes: int = 0
    """Bytes in Redis: state doc and turns (legacy: the blob)."""
    state_stored: int = 0
    """Bytes of the state (everything but history and bot_config) as stored."""
    state_plain: int = 0
    """... as one uncompressed JSON document."""
    state_keys: list[tuple[str, int]] = field(default_factory=list)
    """(top-level key, bytes as stored: compressed when that saved space) of the state, largest
    first."""
    state_keys_raw: dict[str, int] = field(default_factory=dict)
    """Top-level key -> bytes of its JSON, uncompressed."""
    record_keys: list[tuple[str, int]] = field(default_factory=list)
    """(key of ``record``, bytes as stored when ``record`` is split, else as JSON), largest
    first."""
    record_keys_raw: dict[str, int] = field(default_factory=dict)
    """Key of a split ``record`` -> bytes of its JSON, uncompressed (empty when stored whole)."""
    history: int = 0
    bot_config: int = 0
    bot_config_digest: str = ""
    rev: int | None = None
    next_seq: int | None = None
    archived: int = 0
    turns: int = 0
    ttl: int | None = None
    seen: float | None = None
    seen_problem: str = ""
    last_turns: list[dict] = field(default_factory=list)
    state: dict = field(default_factory=dict)


def session_exists(store, conversation_id):
    """Whether Redis holds this conversation, in the split layout or as a legacy blob."""
    keys = store.keys
    return bool(store.client.exists(keys.state(conversation_id), keys.legacy(conversation_id)))


def session_rows(store, members, *, source):
    """A SessionRow per member of the sorted set ``source``, in order: one pipeline, then one
    more for the broken ones. A member that names no conversation is a "bad entry" row."""
    keys, rows, cids = store.keys, {}, []
    for i, member in enumerate(members):
        try:
            cids.append(indexes.member_id(source, member))
        except CorruptSession as e:
            rows[i] = SessionRow(
                conversation_id=indexes.shown(member), layout="bad entry", key=e.key, problem=str(e)
            )
    pipe = store.client.pipeline(transaction=False)
    for cid in cids:
        pipe.hgetall(keys.state(cid))
        pipe.llen(keys.turns(cid))
        pipe.ttl(keys.state(cid))
        pipe.strlen(keys.legacy(cid))
        pipe.ttl(keys.legacy(cid))
    if cids:
        pipe.zmscore(keys.index_seen, cids)
    *replies, seen = pipe.execute(raise_on_error=False) or [None]
    if isinstance(seen, Exception) or seen is None:  # none, or an index of another type
        seen = [None] * len(cids)
    found = iter(
        _row(store, cid, *replies[5 * i : 5 * i + 5], seen=seen[i]) for i, cid in enumerate(cids)
    )
    rows = [rows[i] if i in rows else next(found) for i in range(len(members))]
    broken = [row for row in rows if row.layout == "undecodable" and not row.bytes]
    return _with_raw_sizes(store, rows, broken)


def _seen(store, cid, seen):
    """(time, "") of a score of the seen index, or (None, why) when it is no time."""
    seen, error = indexes.checked_time(store.keys.index_seen, cid, seen)
    return seen, str(error or "")


def _row(store, cid, fields, turns, ttl, legacy, legacy_ttl, *, seen):
    key = store.keys.state(cid)
    seen, seen_problem = _seen(store, cid, seen)
    ttl = None if isinstance(ttl, Exception) or ttl < 0 else ttl
    for reply, bad in ((fields, key), (turns, store.keys.turns(cid))):
        if isinstance(reply, Exception):
            return SessionRow(
                conversation_id=cid, layout="undecodable", key=bad, problem=str(reply)
            )
    if not fields:
        key = store.keys.legacy(cid)
        if isinstance(legacy, Exception):  # sized and named by _with_raw_sizes
            return SessionRow(conversation_id=cid, layout="undecodable", key=key)
        if legacy:
            # The blob's own TTL, as its page shows it (the state key it has none of has none).
            ttl = None if isinstance(legacy_ttl, Exception) or legacy_ttl < 0 else legacy_ttl
            return SessionRow(conversation_id=cid, layout="legacy", bytes=legacy, key=key, ttl=ttl)
        return SessionRow(conversation_id=cid, layout="gone", key=key, seen=seen)
    common = {"conversation_id": cid, "key": key, "turns": turns, "ttl": ttl, "seen": seen}
    common["seen_problem"] = seen_problem
    try:
        state, _ = store.core.decode_state(key, fields)
        size, archived = _counts(key, fields)
    except CorruptSession as e:
        raw = sum(map(len, fields.values()))
        return SessionRow(**common, layout="undecodable", bytes=raw, problem=_reason(e))
    return SessionRow(
        **common,
        layout="split",
        bot_id=str(state.get("bot_id", "")),
        user_id=str(state.get("user_id", "")),
        archived=archived,
        bytes=size,
    )


def _counts(key, fields):
    """(bytes, archived turns) of a state hash; CorruptSession when one is not a count."""
    size = int_field(key, BYTES, fields.get(BYTES.encode()))
    return size, int_field(key, ARCHIVED, fields.get(ARCHIVED.encode(), 0))


def _stored_sizes(fields):
    """({state key: bytes as stored}, {split key: {sub-key: bytes as stored}}) of a state
    hash's fields (a split key's bytes are its sub-keys')."""
    return key_sizes({name: len(value) for name, value in fields.items()})


def _reason(error):
    return f"{type(error).__name__}: {error}"


def _with_raw_sizes(store, rows, broken):
    """Rows whose keys hold another type: say which, and how much memory they take."""
    if not broken:
        return rows
    pipe = store.client.pipeline(transaction=False)
    for row in broken:
        pipe.type(row.key)
        pipe.memory_usage(row.key)
    replies = pipe.execute()
    fixed = {}
    for i, row in enumerate(broken):
        kind, size = replies[2 * i].decode(), replies[2 * i + 1] or 0
        expected = {
            store.keys.turns(row.conversation_id): "list",
            store.keys.legacy(row.conversation_id): "string",
        }.get(row.key, "hash")
        problem = f"{row.key} holds a {kind}, not a {expected}" if kind != expected else row.problem
        fixed[row.conversation_id] = SessionRow(
            conversation_id=row.conversation_id,
            layout="undecodable",
            key=row.key,
            bytes=size,
            problem=problem,
        )
    return [fixed.get(row.conversation_id, row) for row in rows]


def session_parts(store, conversation_id, *, last=LAST_TURNS):
    """Where the bytes of one session are; raises SessionNotFound when Redis has none of it."""
    keys = store.keys
    state_key = keys.state(conversation_id)
    pipe = store.client.pipeline(transaction=False)
    pipe.hgetall(state_key)
    pipe.llen(keys.turns(conversation_id))
    pipe.lrange(keys.turns(conversation_id), -last, -1)
    pipe.ttl(state_key)
    pipe.zscore(keys.index_seen, conversation_id)
    pipe.exists(keys.legacy(conversation_id))
    fields, turns, items, ttl, seen, legacy = pipe.execute(raise_on_error=False)
    broken = next((r for r in (fields, turns, items) if isinstance(r, Exception)), None)
    if broken is not None:
        return _broken_parts(store, conversation_id, broken)
    if not fields:
        if legacy:
            return _legacy_parts(store, conversation_id, last=last)
        raise SessionNotFound(conversation_id)
    parts = SessionParts(
        conversation_id=conversation_id,
        layout="split",
        key=state_key,
        ttl=None if ttl < 0 else ttl,
        turns=turns,
    )
    # A seen index of another type is named by the page's problems.
    seen = None if isinstance(seen, Exception) else seen
    parts.seen, parts.seen_problem = _seen(store, conversation_id, seen)
    try:
        parts.bytes, parts.archived = _counts(state_key, fields)
        state, shape = store.core.decode_state(state_key, fields)
        parts.rev, parts.next_seq = shape.rev, shape.seq
        turns_key = keys.turns(conversation_id)
        parts.last_turns = [store.core.decode_turn(turns_key, item) for item in items]
        if shape.digest:
            parts.bot_config_digest = shape.digest
            config_key = keys.bot_config(shape.digest)
            (parts.bot_config,) = store.ask([Command("strlen", (config_key,), config_key)])
    except CorruptSession as e:
        parts.layout, parts.problem, parts.key = "undecodable", _reason(e), e.key
        parts.bytes = sum(map(len, fields.values()))
        return parts
    stored = [fields[DOC_FIELD]] if DOC_FIELD in fields else []
    sizes, split = _stored_sizes(fields)
    parts.state_stored = sum(map(len, stored)) + sum(sizes.values())
    parts.history = parts.bytes - parts.state_stored
    _measure_state(store, parts, state, sizes, split.get("record"))
    return parts


def _legacy_parts(store, conversation_id, *, last):
    key = store.keys.legacy(conversation_id)
    (ttl,) = store.ask([Command("ttl", (key,))])
    parts = SessionParts(
        conversation_id=conversation_id, layout="legacy", key=key, ttl=None if ttl < 0 else ttl
    )
    try:
        raw = store.run(legacy.legacy_blob(store.core, conversation_id))
        if raw is None:
            raise SessionNotFound(conversation_id)  # gone since it was found
        parts.bytes = len(raw)
        session = legacy.decode_legacy(store.core, conversation_id, raw)
    except CorruptSession as e:  # another type, no JSON object, or a history of no turns
        parts.layout, parts.problem = "undecodable", str(e)
        return parts
    history = session.pop("history", None) or []
    bot_config = session.pop("bot_config", None)
    parts.history = len(store.codec.serializer.dumps(history))
    parts.bot_config = len(store.codec.serializer.dumps(bot_config)) if bot_config else 0
    parts.state_stored = parts.bytes - parts.history - parts.bot_config
    parts.turns = len(history)
    parts.rev, parts.next_seq = 0, len(history)
    parts.last_turns = [{**turn, "seq": seq} for seq, turn in enumerate(history)][-last:]
    _measure_state(store, parts, session)
    return parts


def _broken_parts(store, conversation_id, error):
    state_key = store.keys.state(conversation_id)
    pipe = store.client.pipeline(transaction=False)
    for key in (state_key, store.keys.turns(conversation_id)):
        pipe.type(key)
        pipe.memory_usage(key)
    state_type, state_size, turns_type, turns_size = pipe.execute()
    bad = state_key if state_type != b"hash" else store.keys.turns(conversation_id)
    kind = (state_type if bad == state_key else turns_type).decode()
    expected = "a hash" if bad == state_key else "a list"
    return SessionParts(
        conversation_id=conversation_id,
        layout="undecodable",
        key=bad,
        bytes=(state_size or 0) + (turns_size or 0),
        problem=f"{bad} holds a {kind}, not {expected} ({error})",
    )


def _measure_state(store, parts, state, stored=None, record=None):
    """Bytes of each state key (and of each key of ``record``) as stored (its own fields), or
    else as its own JSON."""
    dumps, stored = store.codec.serializer.dumps, stored or {}
    parts.state = state
    parts.state_plain = len(dumps(state))
    parts.state_keys_raw = {str(k): len(dumps(v)) for k, v in state.items()}
    parts.state_keys = _largest((k, stored.get(k) or parts.state_keys_raw[str(k)]) for k in state)
    if not isinstance(state.get("record"), dict):
        return
    raw = {str(k): len(dumps(v)) for k, v in state["record"].items()}
    if record is not None:
        parts.record_keys, parts.record_keys_raw = _largest(record.items()), raw
    else:
        parts.record_keys = _largest(raw.items())


def _largest(pairs):
    return sorted(((str(k), n) for k, n in pairs), key=lambda pair: -pair[1])


def legacy_blob(store, conversation_id):
    """The session as the old robot stored it: one stdlib-json document of everything in Redis.

    Raises SessionNotFound, or CorruptSession when a value cannot be decoded.
    """
    blob = store.run(legacy.legacy_blob(store.core, conversation_id))
    if blob is not None and not store.client.exists(store.keys.state(conversation_id)):
        return blob
    session = maintenance.snapshot(store, conversation_id).session
    session["history"] = [{k: v for k, v in t.items() if k != "seq"} for t in session["history"]]
    return json.dumps(session).encode()


def scratch_key(store):
    """A fresh key for one request's temporary value; the caller deletes it."""
    return store.keys.scratch(uuid.uuid4().hex)
