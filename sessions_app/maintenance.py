"""Store primitives for the operations (services.py): sizes and index scans, whole-session
snapshot, drop and restore (trim and re-encode steps: trimming.py; legacy blobs: legacy_blobs.py).

Each is one step the services compose; writes to one conversation are one of its Lua scripts,
and the indexes are updated beside it from what the script reports.
"""

import itertools
import time
from typing import NamedTuple

from convstore import indexing
from convstore import keys as fields
from convstore.codec import turn_item
from convstore.exceptions import CorruptSession, SessionExists, SessionNotFound, StoreUnavailable
from convstore.protocol import Command, Script, int_field, text_field
from convstore.state_fields import encode_state, state_of
from sessions_app import indexes

DROPPED, WRITTEN, GONE = 1, 0, -1


class SessionSize(NamedTuple):
    """A session's size in Redis, as the operations scan it."""

    conversation_id: str
    bytes: int
    turns: int
    seen: float | None
    exists: bool
    corrupt: CorruptSession | None = None
    """Why its keys cannot be read, when they cannot."""
    next_seq: int = 0
    """The seq its next turn gets, when it was read."""
    bad_entry: CorruptSession | None = None
    """A bad index entry, reported: a score that is no size or time (the session is still
    compacted, never idle), or (``exists`` False) a member that is no id, an index of a type."""


class Snapshot(NamedTuple):
    """A whole session read for archiving, with what a later write (or a re-creation) would
    change."""

    session: dict
    incarnation: str
    rev: int
    next_seq: int
    bytes: int
    seen: float | None


def conversation_keys(store, cid):
    fields.check_cid(cid)
    return [store.keys.state(cid), store.keys.turns(cid)]


def scan_keys(store, pattern, *, batch=500):
    """Every key matching ``pattern``, by SCAN, in lists of about ``batch``."""
    cursor = None
    while cursor != 0:
        ((cursor, found),) = store.ask([Command("scan", (cursor or 0, pattern, batch))])
        if found:
            yield found


def follow(store, commands):
    """Index commands after writes that happened, ``{conversation id: [Command]}``, in one
    round trip: their failure is drift, not the caller's."""
    batch = [command for some in commands.values() for command in some]
    if not batch:
        return
    try:
        replies = store.send(batch)
    except StoreUnavailable as e:
        replies = [e] * len(batch)
    answered = iter(zip(batch, replies, strict=True))
    for cid, some in commands.items():
        indexing.drifted(store.core, cid, itertools.islice(answered, len(some)))


# --- sizes and scans ----------------------------------------------------------------------


def session_sizes(store, conversation_ids):
    """A SessionSize per id, in order; ``exists`` is False where the state is gone."""
    conversation_ids = [fields.check_cid(cid) for cid in conversation_ids]
    if not conversation_ids:
        return []
    batch = []
    for cid in conversation_ids:
        state_key = store.keys.state(cid)
        names = (fields.BYTES, fields.SEQ, fields.REV)
        batch.append(Command("hmget", (state_key, *names), state_key))
        batch.append(Command("llen", (store.keys.turns(cid),), store.keys.turns(cid)))
    batch.append(Command("zmscore", (store.keys.index_seen, conversation_ids)))
    *replies, seen = store.send(batch)
    if isinstance(seen, Exception):
        # A seen index of another type is reported once, by the scan (indexes.wrong_types):
        # no session has a known last write, so none is idle.
        seen = [None] * len(conversation_ids)
    return [
        _session_size(store, batch, i, cid, replies, seen[i])
        for i, cid in enumerate(conversation_ids)
    ]


def _session_size(store, batch, i, cid, replies, seen):
    seen, bad_entry = indexes.checked_time(store.keys.index_seen, cid, seen)
    try:
        (size, seq, rev), turns = store.raise_for(
            replies[2 * i : 2 * i + 2], batch[2 * i : 2 * i + 2]
        )
        # A state hash without its bytes or seq is corrupt, not gone.
        exists = (size, seq, rev) != (None, None, None)
        state_key = store.keys.state(cid)
        size = int_field(state_key, fields.BYTES, size) if exists else 0
        seq = int_field(state_key, fields.SEQ, seq) if exists else 0
    except CorruptSession as e:
        return SessionSize(cid, 0, 0, seen, True, e, bad_entry=bad_entry)
    return SessionSize(cid, size, turns, seen, exists, next_seq=seq, bad_entry=bad_entry)


def scan_index(store, cursor=0, *, batch=500):
    """One ZSCAN step of the bytes index: (next cursor, 0 at the end; a SessionSize each).

    Bad entries come as sizes with ``bad_entry`` (the indexes of another type with the first
    step); while the index holds another type, the state keys are scanned instead (see
    indexes.scan_step). As with any SCAN, a member may come twice while the set is rehashed.
    """
    wrong = indexes.wrong_types(store) if cursor == 0 else []
    cursor, entries, bad = indexes.scan_step(store, cursor, batch=batch)
    sizes = session_sizes(store, [cid for cid, _ in entries])
    for i, (cid, score) in enumerate(entries):
        if error := indexes.size_error(store.keys.index_bytes, cid, score):
            sizes[i] = sizes[i]._replace(bad_entry=sizes[i].bad_entry or error)
    unusable = [SessionSize(entry, 0, 0, None, False, bad_entry=e) for entry, e in wrong + bad]
    return cursor, unusable + sizes


def index_entries(store):
    """Every (conversation id, bytes) of the bytes index, smallest first (without its bad
    entries: see indexes.size_entries)."""
    return indexes.size_entries(store)[0]


def bot_config_digests(store, conversation_ids):
    """The bot_config digest of each conversation, in order: None where it has none, and
    the CorruptSession where its keys cannot be read."""
    batch = []
    for cid in conversation_ids:
        state_key, turns_key = conversation_keys(store, cid)
        batch += [
            Command("hget", (state_key, fields.CFG), state_key),
            Command("llen", (turns_key,), turns_key),
        ]
    replies = store.send(batch)
    digests = []
    for i in range(0, len(batch), 2):
        try:
            digest, _ = store.raise_for(replies[i : i + 2], batch[i : i + 2])
            digest = digest and text_field(batch[i].key, fields.CFG, digest)
        except CorruptSession as e:
            digest = e
        digests.append(digest)
    return digests


def prune_index(store, conversation_ids):
    """Drop index entries whose session is gone; returns how many were dropped."""
    if not conversation_ids:
        return 0
    exists = store.ask([Command("exists", (store.keys.state(cid),)) for cid in conversation_ids])
    gone = [cid for cid, found in zip(conversation_ids, exists, strict=True) if not found]
    if not gone:
        return 0
    pruned, _ = store.ask(
        [
            Command("zrem", (store.keys.index_bytes, *gone)),
            Command("zrem", (store.keys.index_seen, *gone)),
        ]
    )
    return pruned


def rebuild_indexes(store, *, batch=500):
    """Index every state key found by SCAN, then prune entries whose state is gone.

    The repair of index drift (a write whose index commands failed after it happened): the
    bytes of each session are set from its state hash, which an append landing in between may
    already have moved past. ``missing`` counts the sessions no index knew.
    """
    indexed = missing = pruned = 0
    for state_keys in scan_keys(store, store.keys.state_pattern, batch=batch):
        cids = [store.keys.cid_from_state(key.decode()) for key in state_keys]
        replies = store.send([Command("hget", (key, fields.BYTES)) for key in state_keys])
        sizes = {
            cid: int(size)
            for cid, size in zip(cids, replies, strict=True)
            if isinstance(size, bytes) and size.isdigit()
        }
        if sizes:
            now = dict.fromkeys(sizes, time.time())
            bytes_key, seen_key = store.keys.index_bytes, store.keys.index_seen
            added, _ = indexes.write(
                store,
                [
                    Command("zadd", (bytes_key, sizes), bytes_key),
                    Command("zadd", (seen_key, now, True), seen_key),
                ],
            )
            missing += added or 0
        indexed += len(sizes)
    cursor = None
    while cursor != 0:
        cursor, sizes = scan_index(store, cursor or 0, batch=batch)
        # Only entries of sessions that are gone: a bad entry is left for an operator.
        gone = [size for size in sizes if not size.exists and size.bad_entry is None]
        pruned += prune_index(store, [size.conversation_id for size in gone])
    return {"indexed": indexed, "missing": missing, "pruned": pruned}


def is_empty(store):
    """Whether Redis holds no conversation, in either layout."""
    (count,) = store.ask([Command("zcard", (store.keys.index_bytes,))])
    if count:
        return False
    return next(scan_keys(store, store.keys.legacy_pattern, batch=1000), None) is None


# --- trim steps ---------------------------------------------------------------------------


def next_seq(store, conversation_id):
    """The seq the next appended turn will get."""
    state_key, _ = conversation_keys(store, conversation_id)
    (seq,) = store.ask([Command("hget", (state_key, fields.SEQ), state_key)])
    if seq is None:
        raise SessionNotFound(conversation_id)
    return int_field(state_key, fields.SEQ, seq)


def measure_trim(store, conversation_id, *, keep, pinned):
    """(turns, bytes) a trim to ``keep`` after ``pinned`` would move, measured in Redis."""
    keys = conversation_keys(store, conversation_id)
    (measured,) = store.ask([Script("trim_measure", keys, [pinned, keep])])
    if measured is None:
        raise SessionNotFound(conversation_id)
    return tuple(measured)


# --- whole sessions -----------------------------------------------------------------------


def snapshot(store, conversation_id):
    """The whole session as it is in Redis, every turn decoded, with its rev and next seq."""
    state_key, turns_key = conversation_keys(store, conversation_id)
    batch = [
        Command("hgetall", (state_key,), state_key),
        Command("lrange", (turns_key, 0, -1), turns_key),
        Command("zscore", (store.keys.index_seen, conversation_id)),
    ]
    state, items, seen = store.send(batch)
    state, items = store.raise_for([state, items], batch[:2])
    if not state:
        raise SessionNotFound(conversation_id)
    seen = indexes.known_time(store.keys.index_seen, conversation_id, seen)
    session, shape = store.core.decode_state(state_key, state)
    digest = state.get(fields.CFG.encode())
    if digest is not None:
        session["bot_config"] = store.run(store.core.fetch_bot_config(digest))
    session["history"] = [store.core.decode_turn(turns_key, item) for item in items]
    size = int_field(state_key, fields.BYTES, state.get(fields.BYTES.encode()))
    incarnation = text_field(state_key, fields.INC, state.get(fields.INC.encode()))
    return Snapshot(session, incarnation, shape.rev, shape.seq, size, seen)


def drop_archived(store, conversation_id, *, incarnation, rev, seq):
    """Delete a session archived whole, unless it was written (or re-created) since.

    Returns DROPPED, WRITTEN (it stays: written since it was read) or GONE (no state).
    """
    keys = conversation_keys(store, conversation_id)
    (dropped,) = store.ask([Script("drop_archived", keys, [rev, seq, incarnation])])
    if dropped == DROPPED:
        follow(
            store,
            {
                conversation_id: [
                    Command("zrem", (store.keys.index_bytes, conversation_id)),
                    Command("zrem", (store.keys.index_seen, conversation_id)),
                ]
            },
        )
    return dropped


def restore(store, session, *, incarnation, rev, next_seq, turns):
    """Put an archived session back with its incarnation, ``rev``, seq counter and some of its
    turns.

    Refuses, with SessionExists, when the conversation is in Redis again (re-created since it
    was archived, or a legacy blob): restoring would mix two conversations under one id.
    """
    cid = fields.check_cid(session.get("conversation_id"))
    keys = conversation_keys(store, cid)
    legacy_key = store.keys.legacy(cid)
    (legacy,) = store.ask([Command("exists", (legacy_key,))])
    if legacy:
        raise SessionExists(cid, "is in Redis as a legacy blob: migrate or delete it first")
    encoded = encode_state(store.core, state_of(session)).items()
    items = [
        turn_item(t["seq"], p) for t, p in zip(turns, store.core.encode_turns(turns), strict=True)
    ]
    size = sum(len(value) for _, value in encoded) + sum(map(len, items))
    meta = {
        fields.INC: incarnation,
        fields.LAYOUT: fields.LAYOUT_VERSION,
        fields.REV: rev,
        fields.SEQ: next_seq,
        fields.ARCHIVED: next_seq - len(items),
        fields.BYTES: size,
    }
    batch = []
    if session.get("bot_config") is not None:
        digest, batch = store.core.bot_config_commands(session["bot_config"])
        meta[fields.CFG] = digest
    pairs = [*meta.items(), *encoded]
    args = [store.ttl, len(pairs), *(part for pair in pairs for part in pair), *items]
    *_, (status,) = store.ask([*batch, Script("restore", keys, args)])
    if status:
        raise SessionExists(
            cid,
            "is live in Redis again (created anew since it was archived): delete or archive "
            "that one first, or leave this one in the archive",
        )
    follow(
        store,
        {
            cid: [
                Command("zadd", (store.keys.index_bytes, {cid: size})),
                Command("zadd", (store.keys.index_seen, {cid: time.time()})),
            ]
        },
    )
    return size
