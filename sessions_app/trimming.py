"""The steps of a trim and of a re-encode, each one round trip for a whole batch of sessions.

Each returns, per session in order, its outcome or the store's error for that session alone
(CorruptSession, SessionNotFound, StoreFull): one bad session never stops the others. Redis
unreachable (StoreUnavailable) stops the batch. The one-session forms raise the error.
"""

from convstore import keys as fields
from convstore.codec import turn_item
from convstore.exceptions import SessionNotFound, StoreError, StoreFull, StoreUnavailable
from convstore.protocol import Command, Script, text_field
from convstore.state_fields import is_state_field
from sessions_app.maintenance import conversation_keys, follow


def trim_candidates(store, conversation_id, *, keep, pinned, batch, below):
    """(incarnation, up to ``batch`` decoded turns, each with a seq under ``below``) that
    trimming to ``keep`` (after the first ``pinned``) would move next."""
    found = trim_candidates_many(
        store, [(conversation_id, below)], keep=keep, pinned=pinned, batch=batch
    )
    return _one(found)


def trim_candidates_many(store, targets, *, keep, pinned, batch):
    """`trim_candidates` of each (conversation id, below) of ``targets``."""
    requests = [
        Script("trim_head", conversation_keys(store, cid), [pinned, keep, batch])
        for cid, _ in targets
    ]

    def read(request, reply, below):
        if reply is None:
            raise SessionNotFound(store.keys.cid_from_state(request.keys[0]))
        incarnation, items = reply
        incarnation = text_field(request.keys[0], fields.INC, incarnation)
        turns = (store.core.decode_turn(request.keys[1], item) for item in items)
        return incarnation, [turn for turn in turns if turn["seq"] < below]

    return _each(store, requests, read, [below for _, below in targets])


def remove_archived(store, conversation_id, seqs, *, pinned, incarnation):
    """Remove the turns ``seqs`` of ``incarnation``, already copied to the archive; returns
    (removed, bytes). Nothing is removed from another incarnation."""
    return _one(remove_archived_many(store, [(conversation_id, seqs, incarnation)], pinned=pinned))


def remove_archived_many(store, removals, *, pinned):
    """`remove_archived` of each (conversation id, seqs, incarnation) of ``removals``; the
    bytes index moves for all of them in one more round trip."""
    requests = [
        Script("trim_remove", conversation_keys(store, cid), [inc, pinned + len(seqs), *seqs])
        for cid, seqs, inc in removals
    ]
    removed = _each(store, requests, lambda request, reply, _: tuple(reply))
    moves = zip((cid for cid, _, _ in removals), removed, strict=True)
    _move_index(store, [(cid, -out[1]) for cid, out in moves if _ok(out)])
    return removed


def reencode_state(store, conversation_id):
    """Re-encode the state fields with the current codec; bytes saved.

    Decodes the whole state first (as `load` does: counters, digest, field names and values):
    CorruptSession, with nothing changed, when any of it does not decode.
    """
    return _one(reencode_states(store, [conversation_id]))


def reencode_states(store, conversation_ids):
    """`reencode_state` of each conversation."""
    reads = [
        Command("hgetall", (store.keys.state(cid),), store.keys.state(cid))
        for cid in map(fields.check_cid, conversation_ids)
    ]
    return _swap(store, conversation_ids, _each(store, reads, _state_changes(store)))


def _state_changes(store):
    doc = fields.DOC.encode()

    def changes(request, state, _):
        if not state:
            raise SessionNotFound(store.keys.cid_from_state(request.key))
        session, _ = store.core.decode_state(request.key, state)
        changed = []
        for name, raw in state.items():
            if name == doc:
                value = session  # a first-release state: decoded as one doc
            elif is_state_field(name) and raw != fields.SPLIT_MARKER and doc not in state:
                value = store.core.decode_value(request.key, raw)
            else:
                continue
            new = store.codec.encode(value)
            if new != raw:
                changed += [name, raw, new]
        return [len(changed) // 3, *changed]

    return changes


def reencode_turns(store, conversation_id):
    """Re-encode the turns in Redis with the current codec; bytes saved.

    A turn stored as it is and too short to compress would come out the same: it is skipped
    without being decoded.
    """
    return _one(reencode_turns_many(store, [conversation_id]))


def reencode_turns_many(store, conversation_ids):
    """`reencode_turns` of each conversation."""
    reads = [
        Command("lrange", (key, 0, -1), key)
        for key in (conversation_keys(store, cid)[1] for cid in conversation_ids)
    ]

    def changes(request, items, _):
        args = [0]
        for item in items:
            if not store.codec.may_change(item.partition(b"|")[2]):
                continue
            turn = store.core.decode_turn(request.key, item)
            new_item = turn_item(turn["seq"], store.core.encode_turns([turn])[0])
            if new_item != item:
                args += [item, new_item]
        return args

    return _swap(store, conversation_ids, _each(store, reads, changes))


def _swap(store, conversation_ids, swaps):
    """Run the ``reencode`` script of each session whose swaps (its arguments) change
    anything; the bytes saved by each (0 where nothing changed), or its error."""
    todo = [i for i, args in enumerate(swaps) if _ok(args) and args != [0]]
    requests = [
        Script("reencode", conversation_keys(store, conversation_ids[i]), swaps[i]) for i in todo
    ]
    deltas = _each(store, requests, lambda request, delta, _: delta)
    saved = [0 if _ok(args) else args for args in swaps]
    moves = []
    for i, delta in zip(todo, deltas, strict=True):
        if _ok(delta):
            saved[i] = -delta
            moves.append((conversation_ids[i], delta))
        elif not isinstance(delta, StoreFull):  # a re-encode may grow a value: it waits for room
            saved[i] = delta
    _move_index(store, moves)
    return saved


def _move_index(store, moves):
    commands = {
        cid: [Command("zincrby", (store.keys.index_bytes, d, cid))] for cid, d in moves if d
    }
    follow(store, commands)


def _each(store, requests, read, extras=None):
    """``read(request, reply, extra)`` of each request's reply, sent in one round trip; the
    store's error for that session in its place when its reply, or reading it, fails."""
    if not requests:
        return []
    replies = store.send(requests)
    outcomes = []
    for request, reply, extra in zip(
        requests, replies, extras or [None] * len(requests), strict=True
    ):
        try:
            (reply,) = store.raise_for([reply], [request])
            outcomes.append(read(request, reply, extra))
        except StoreUnavailable as e:
            if not isinstance(e, StoreFull):
                raise
            outcomes.append(e)
        except StoreError as e:
            outcomes.append(e)
    return outcomes


def _ok(outcome):
    return not isinstance(outcome, Exception)


def _one(outcomes):
    (outcome,) = outcomes
    if isinstance(outcome, Exception):
        raise outcome
    return outcome
