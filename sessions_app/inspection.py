"""Redis reads for the sessions admin: pages of the index ZSETs, the rows of a page, the parts of
one session, and a session written out as the old robot's single JSON blob.

Each takes the store and reads through pipelines: a page costs a few round trips whatever the
number of sessions, and decodes only the sessions it shows. Keys come from `store.keys` only.
"""

import json
import uuid
from dataclasses import dataclass, field

from sessions_app import maintenance
from sessions_app.exceptions import CorruptSession, SessionNotFound
from sessions_app.keys import ARCHIVED, BYTES, CFG, DOC, REV, SEQ, STATE_PREFIX

LAST_TURNS = 50
DOC_FIELD, PREFIX = DOC.encode(), STATE_PREFIX.encode()


@dataclass(frozen=True, kw_only=True)
class IndexSummary:
    sessions: int
    p50: int
    p95: int
    max: int
    histogram: list[tuple[int, int, int]]
    """(low, high, sessions) per power-of-two size band, low inclusive, high exclusive."""
    largest: list[tuple[str, int]]


@dataclass(frozen=True, kw_only=True)
class IndexPage:
    total: int
    entries: list[tuple[str, float]]
    """(conversation id, score) in the order asked for."""


@dataclass(frozen=True, kw_only=True)
class SessionRow:
    """One session as the list shows it. ``layout``: split, legacy, gone or undecodable."""

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
    """(top-level key, bytes of its JSON) of the state, largest first."""
    record_keys: list[tuple[str, int]] = field(default_factory=list)
    history: int = 0
    bot_config: int = 0
    bot_config_digest: str = ""
    rev: int | None = None
    next_seq: int | None = None
    archived: int = 0
    turns: int = 0
    ttl: int | None = None
    seen: float | None = None
    last_turns: list[dict] = field(default_factory=list)
    state: dict = field(default_factory=dict)


def index_summary(store, *, top):
    """Count, percentiles, histogram and the ``top`` largest from the bytes index, O(log N) each."""
    key = store.keys.index_bytes
    count = store.client.zcard(key)
    pipe = store.client.pipeline(transaction=False)
    for fraction in (0, 0.5, 0.95):
        rank = round(fraction * (count - 1))
        pipe.zrange(key, rank, rank, withscores=True)
    pipe.zrange(key, 0, top - 1, desc=True, withscores=True)
    smallest, p50, p95, largest = pipe.execute()
    if not largest:
        return IndexSummary(sessions=0, p50=0, p95=0, max=0, histogram=[], largest=[])
    biggest = int(largest[0][1])
    bands = _bands(_score(smallest), biggest)
    pipe = store.client.pipeline(transaction=False)
    for low, high in bands:
        pipe.zcount(key, low, f"({high}")
    histogram = [(low, high, n) for (low, high), n in zip(bands, pipe.execute(), strict=True)]
    return IndexSummary(
        sessions=count,
        p50=_score(p50),
        p95=_score(p95),
        max=biggest,
        histogram=histogram,
        largest=[(member.decode(), int(score)) for member, score in largest],
    )


def _score(reply):
    # Empty when sessions went away between the count and the read.
    return int(reply[0][1]) if reply else 0


def _bands(smallest, biggest):
    """Power-of-two size bands from the smallest session's to the largest's."""
    low = 1 << (smallest.bit_length() - 1) if smallest else 0
    high = max(2 * low, 1)
    bands = []
    while low <= biggest:
        bands.append((low, high))
        low, high = high, high * 2
    return bands


def index_page(store, source, *, offset, limit, descending=True, within=None):
    """One page of the ZSET ``source`` by score; only members of every ZSET ``within``, if any."""
    start, stop = offset, offset + limit - 1
    if within is None:
        pipe = store.client.pipeline(transaction=False)
        pipe.zcard(source)
        pipe.zrange(source, start, stop, desc=descending, withscores=True)
        total, entries = pipe.execute()
    else:
        scratch = store.keys.scratch(uuid.uuid4().hex)
        pipe = store.client.pipeline(transaction=True)
        # Weights 0 and 1: the members of `within`, scored as in `source`.
        pipe.zinterstore(scratch, {key: 0 for key in within} | {source: 1})
        pipe.zrange(scratch, start, stop, desc=descending, withscores=True)
        pipe.delete(scratch)
        total, entries, _ = pipe.execute()
    return IndexPage(total=total, entries=[(m.decode(), score) for m, score in entries])


def find_by_prefix(store, prefix, *, limit):
    """Up to ``limit`` (conversation id, bytes) whose id starts with ``prefix``, largest first.

    From the census's id set, by lex range (O(log N)): a ZSCAN with MATCH would walk all ids and
    block Redis for as long. Sessions newer than the census are found by their exact id only.
    """
    start = b"[" + prefix.encode()
    ids = store.client.zrange(
        store.keys.census("ids"),
        start,
        b"(" + prefix.encode() + b"\xff",
        bylex=True,
        offset=0,
        num=limit,
    )
    if not ids:
        return []
    sizes = store.client.zmscore(store.keys.index_bytes, ids)
    found = [(cid.decode(), size) for cid, size in zip(ids, sizes, strict=True) if size is not None]
    return sorted(found, key=lambda pair: -pair[1])


def session_exists(store, conversation_id):
    """Whether Redis holds this conversation, in the split layout or as a legacy blob."""
    keys = store.keys
    return bool(store.client.exists(keys.state(conversation_id), keys.legacy(conversation_id)))


def session_rows(store, conversation_ids):
    """A SessionRow per id, in order: one pipeline, then one more for the broken ones."""
    keys = store.keys
    pipe = store.client.pipeline(transaction=False)
    for cid in conversation_ids:
        pipe.hgetall(keys.state(cid))
        pipe.llen(keys.turns(cid))
        pipe.ttl(keys.state(cid))
        pipe.strlen(keys.legacy(cid))
    if conversation_ids:
        pipe.zmscore(keys.index_seen, conversation_ids)
    *replies, seen = pipe.execute(raise_on_error=False) or [None]
    rows = [
        _row(store, cid, *replies[4 * i : 4 * i + 4], seen=seen[i])
        for i, cid in enumerate(conversation_ids)
    ]
    broken = [row for row in rows if row.layout == "undecodable" and not row.bytes]
    return _with_raw_sizes(store, rows, broken)


def _row(store, cid, fields, turns, ttl, legacy, *, seen):
    key = store.keys.state(cid)
    ttl = None if isinstance(ttl, Exception) or ttl < 0 else ttl
    for reply, bad in ((fields, key), (turns, store.keys.turns(cid))):
        if isinstance(reply, Exception):
            return SessionRow(
                conversation_id=cid, layout="undecodable", key=bad, problem=str(reply)
            )
    if not fields:
        if isinstance(legacy, int) and legacy:
            key = store.keys.legacy(cid)
            return SessionRow(conversation_id=cid, layout="legacy", bytes=legacy, key=key)
        return SessionRow(conversation_id=cid, layout="gone", key=key, seen=seen)
    common = {"conversation_id": cid, "key": key, "turns": turns, "ttl": ttl, "seen": seen}
    try:
        state, _ = store.core.decode_state(key, fields)
        size, archived = int(fields[BYTES.encode()]), int(fields.get(ARCHIVED.encode(), 0))
    except (CorruptSession, KeyError, ValueError) as e:
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


def _stored_sizes(fields):
    """(state key, bytes as stored) of the per-key fields of a state hash."""
    return [(n[len(PREFIX) :].decode(), len(v)) for n, v in fields.items() if n.startswith(PREFIX)]


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
        expected = "list" if row.key == store.keys.turns(row.conversation_id) else "hash"
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
        seen=seen,
        turns=turns,
    )
    try:
        parts.bytes = int(fields[BYTES.encode()])
        parts.rev, parts.next_seq = int(fields[REV.encode()]), int(fields[SEQ.encode()])
        parts.archived = int(fields.get(ARCHIVED.encode(), 0))
        state, _ = store.core.decode_state(state_key, fields)
        turns_key = keys.turns(conversation_id)
        parts.last_turns = [store.core.decode_turn(turns_key, item) for item in items]
    except (CorruptSession, KeyError, ValueError) as e:
        parts.layout, parts.problem = "undecodable", _reason(e)
        parts.bytes = sum(map(len, fields.values()))
        return parts
    stored = [fields[DOC_FIELD]] if DOC_FIELD in fields else []
    parts.state_stored = sum(map(len, stored)) + sum(n for _, n in _stored_sizes(fields))
    parts.history = parts.bytes - parts.state_stored
    digest = fields.get(CFG.encode())
    if digest:
        parts.bot_config_digest = digest.decode()
        parts.bot_config = store.client.strlen(keys.bot_config(parts.bot_config_digest))
    _measure_state(store, parts, state, dict(_stored_sizes(fields)))
    return parts


def _legacy_parts(store, conversation_id, *, last):
    key = store.keys.legacy(conversation_id)
    pipe = store.client.pipeline(transaction=False)
    pipe.get(key)
    pipe.ttl(key)
    raw, ttl = pipe.execute()
    parts = SessionParts(
        conversation_id=conversation_id,
        layout="legacy",
        key=key,
        bytes=len(raw),
        ttl=None if ttl < 0 else ttl,
    )
    try:
        session = store.core.decode_object(key, raw)
    except CorruptSession as e:
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


def _measure_state(store, parts, state, stored=None):
    """Bytes of each state key as stored (its own field), or else as its own JSON."""
    dumps, stored = store.codec.serializer.dumps, stored or {}
    parts.state = state
    parts.state_plain = len(dumps(state))
    parts.state_keys = _largest((k, stored.get(k) or len(dumps(v))) for k, v in state.items())
    record = state.get("record")
    if isinstance(record, dict):
        parts.record_keys = _largest((k, len(dumps(v))) for k, v in record.items())


def _largest(pairs):
    return sorted(((str(k), n) for k, n in pairs), key=lambda pair: -pair[1])


def legacy_blob(store, conversation_id):
    """The session as the old robot stored it: one stdlib-json document of everything in Redis.

    Raises SessionNotFound, or CorruptSession when a value cannot be decoded.
    """
    legacy = store.client.get(store.keys.legacy(conversation_id))
    if legacy is not None and not store.client.exists(store.keys.state(conversation_id)):
        return legacy
    session = maintenance.snapshot(store, conversation_id).session
    session["history"] = [{k: v for k, v in t.items() if k != "seq"} for t in session["history"]]
    return json.dumps(session).encode()


def scratch_key(store):
    """A fresh key for one request's temporary value; the caller deletes it."""
    return store.keys.scratch(uuid.uuid4().hex)
