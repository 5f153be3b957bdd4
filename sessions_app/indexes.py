"""The two index sorted sets (bytes, last write) read so that no entry stops a reader: by the
jobs, and by the admin's pages (a summary of the sizes, a page of a sorted set, a search).

A member that names no conversation, a score that is no size or no time, and an index of another
type are each a CorruptSession naming the index: whoever reads it reports it and goes on with the
other entries. Nothing here writes but the scratch key of a filtered page; a bad entry stays
for an operator to inspect and remove (redis-cli).
"""

import itertools
import math
import uuid
from dataclasses import dataclass, field
from typing import NamedTuple

import redis

from convstore import keys as fields
from convstore.exceptions import CorruptSession
from convstore.protocol import Command, int_field

LAST_TIME = 253402300799.0
"""9999-12-31 23:59:59 UTC: a later score of the seen index is no time anyone can show."""


class BadEntry(NamedTuple):
    """An index entry no reader can use, as the jobs and pages report it."""

    entry: str
    """The member as text, or the index's key when the whole index is of another type."""
    error: CorruptSession


def shown(member):
    """An index member as text, whatever its bytes: for reports and pages."""
    return member.decode(errors="backslashreplace") if isinstance(member, bytes) else member


def member_id(key, member):
    """The conversation id the member ``member`` of ``key`` names; CorruptSession if none."""
    try:
        return fields.check_cid(member.decode() if isinstance(member, bytes) else member)
    except (UnicodeDecodeError, ValueError):
        raise CorruptSession(key, f"member {shown(member)!r} is not a conversation id") from None


def size_error(key, member, score):
    """The CorruptSession of a score of the bytes index that is no number of bytes, or None."""
    if score is None or (math.isfinite(score) and score >= 0):
        return None
    return CorruptSession(key, f"the score of {shown(member)!r} is {score}, not a size in bytes")


def check_size(key, cid, score):
    """A score of the bytes index, or CorruptSession when it is no number of bytes."""
    if error := size_error(key, cid, score):
        raise error
    return score


def check_time(key, cid, score):
    """A score of the seen index, or CorruptSession when it is no time (unix seconds)."""
    if score is not None and not 0 <= score <= LAST_TIME:
        raise CorruptSession(key, f"the score of {cid!r} is {score}, not a time")
    return score


def checked_time(key, cid, score):
    """(time, None) of a score of the seen index, or (None, CorruptSession) if it is no time."""
    try:
        return check_time(key, cid, score), None
    except CorruptSession as e:
        return None, e


def known_time(key, cid, reply):
    """A score of the seen index as a time; None for an error reply (an index of another type)
    or a score that is no time: the last write is then not known."""
    return None if isinstance(reply, Exception) else checked_time(key, cid, reply)[0]


def wrong_types(store, names=None):
    """A BadEntry for each index (or sorted set of ``names``) that holds another type."""
    names = names or (store.keys.index_bytes, store.keys.index_seen)
    types = store.ask([Command("type", (key,)) for key in names])
    return [
        BadEntry(key, CorruptSession(key, f"holds a {kind.decode()}, not a sorted set"))
        for key, kind in zip(names, types, strict=True)
        if kind not in (b"zset", b"none")
    ]


def write(store, batch):
    """The replies of index writes, None where the index holds another type: it is reported by
    the scans (wrong_types) and left for an operator, not written over."""
    replies = store.send(batch)
    for i, (reply, request) in enumerate(zip(replies, batch, strict=True)):
        try:
            store.raise_for([reply], [request])
        except CorruptSession:
            replies[i] = None
    return replies


def _valid(key, pairs):
    """([(conversation id, score)], [BadEntry]) of (member, score) pairs of ``key``."""
    entries, bad = [], []
    for member, score in pairs:
        try:
            entries.append((member_id(key, member), score))
        except CorruptSession as e:
            bad.append(BadEntry(shown(member), e))
    return entries, bad


def scan_step(store, cursor, *, batch):
    """One step over the bytes index: (next cursor, 0 at the end; [(id, score)], [BadEntry]).

    When the index holds another type, the step is one of a SCAN over the state keys instead
    (scores None): a job still finds every session while the index waits for its repair.
    """
    key = store.keys.index_bytes
    try:
        ((cursor, pairs),) = store.ask([Command("zscan", (key, cursor, None, batch), key)])
    except CorruptSession:
        cursor, state_keys = _scan_states(store, cursor, batch)
        return cursor, *_valid(store.keys.state_pattern, ((k, None) for k in state_keys))
    return cursor, *_valid(key, pairs)


def _scan_states(store, cursor, batch):
    """(next cursor, ids as bytes) of one SCAN step over the state keys."""
    ((cursor, found),) = store.ask([Command("scan", (cursor, store.keys.state_pattern, batch))])
    # Through latin-1, which maps every byte: an id that is not UTF-8 stays bytes to report.
    return cursor, [
        store.keys.cid_from_state(key.decode("latin-1")).encode("latin-1") for key in found
    ]


def all_entries(store, *, batch=1000):
    """Every (conversation id, score) of the bytes index, smallest first, and a BadEntry for
    each member that is no id.

    When the index holds another type: the sessions of the state keys (found by SCAN), each
    with the bytes its state hash counts (a BadEntry where that is no count).
    """
    key = store.keys.index_bytes
    try:
        (pairs,) = store.ask([Command("zrange", (key, 0, -1, False, True), key)])
    except CorruptSession:
        return _sizes_from_states(store, batch)
    return _valid(key, pairs)


def size_entries(store):
    """``all_entries`` with the sizes as ints; a score that is no size is a BadEntry too."""
    pairs, bad = all_entries(store)
    sizes = []
    for cid, score in pairs:
        try:
            sizes.append((cid, int(check_size(store.keys.index_bytes, cid, score))))
        except CorruptSession as e:
            bad.append(BadEntry(cid, e))
    return sizes, bad


def _sizes_from_states(store, batch):
    cursor, sizes, bad = None, [], []
    while cursor != 0:
        cursor, cids = _scan_states(store, cursor or 0, batch)
        entries, wrong = _valid(store.keys.state_pattern, ((cid, None) for cid in cids))
        bad += wrong
        state_keys = [store.keys.state(cid) for cid, _ in entries]
        replies = store.send([Command("hget", (key, fields.BYTES)) for key in state_keys])
        for (cid, _), state_key, size in zip(entries, state_keys, replies, strict=True):
            try:
                sizes.append((cid, int_field(state_key, fields.BYTES, size)))
            except CorruptSession as e:
                bad.append(BadEntry(cid, e))
    # SCAN may return a key twice; the index it stands in for holds each id once.
    return sorted(dict(sizes).items(), key=lambda entry: entry[1]), bad


# --- the admin's pages of the sorted sets ----------------------------------------------


@dataclass(frozen=True, kw_only=True)
class IndexSummary:
    sessions: int
    p50: int
    p95: int
    max: int
    histogram: list[tuple[int, int, int]]
    """(low, high, sessions) per log-spaced size band, low inclusive, high exclusive."""
    largest: list[tuple[bytes, int]]
    """(member, bytes): a member may name no conversation (see session_rows)."""
    bad_scores: list[CorruptSession] = field(default_factory=list)
    """The first entries whose score is no size (negative, inf): left out of the figures."""


@dataclass(frozen=True, kw_only=True)
class IndexPage:
    total: int
    entries: list[tuple[bytes, float]]
    """(member, score) in the order asked for."""
    problem: str = ""
    """Why the page could not be read, when it could not (the rows are then empty)."""


def index_summary(store, *, top):
    """Count, percentiles, histogram and the ``top`` largest from the bytes index, O(log N) each.

    The figures are over the scores that are sizes; the others are listed as bad. An index of
    another type gives empty figures (the page names it, from indexes.wrong_types).
    """
    key = store.keys.index_bytes
    pipe = store.client.pipeline(transaction=False)
    pipe.zcard(key)
    pipe.zcount(key, "-inf", "(0")
    pipe.zcount(key, 0, "(inf")
    count, below, valid = pipe.execute(raise_on_error=False)
    if isinstance(count, Exception) or not valid:
        return IndexSummary(sessions=0, p50=0, p95=0, max=0, histogram=[], largest=[])
    pipe = store.client.pipeline(transaction=False)
    for fraction in (0, 0.5, 0.95):
        rank = below + round(fraction * (valid - 1))
        pipe.zrange(key, rank, rank, withscores=True)
    pipe.zrange(key, "(inf", 0, desc=True, withscores=True, byscore=True, offset=0, num=top)
    for low, high in (("-inf", "(0"), ("inf", "inf")):
        pipe.zrange(key, low, high, withscores=True, byscore=True, offset=0, num=top)
    smallest, p50, p95, largest, negative, infinite = pipe.execute()
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
        largest=[(member, int(score)) for member, score in largest],
        bad_scores=[size_error(key, m, score) for m, score in negative + infinite],
    )


def _score(reply):
    # Empty when sessions went away between the count and the read.
    return int(reply[0][1]) if reply else 0


BANDS = 12


def _bands(smallest, biggest, *, count=BANDS):
    """``count`` log-spaced size bands from the smallest session's size to the largest's (sizes
    span orders of magnitude): equal widths on a log axis, so no band is an empty gap between
    two full ones just because it is narrow. The last band includes the largest."""
    low = max(smallest, 1)
    top = max(biggest + 1, low + 1)
    ratio = (top / low) ** (1 / count)
    edges = sorted({smallest, *(round(low * ratio**i) for i in range(1, count)), top})
    return list(itertools.pairwise(edges))


def index_page(store, source, *, offset, limit, descending=True, within=None):
    """One page of the ZSET ``source`` by score; only members of every ZSET ``within``, if any."""
    start, stop = offset, offset + limit - 1
    try:
        if within is None:
            pipe = store.client.pipeline(transaction=False)
            pipe.zcard(source)
            pipe.zrange(source, start, stop, desc=descending, withscores=True)
            total, entries = pipe.execute()
        else:
            total, entries = _intersection(store, source, within, start, stop, descending)
    except redis.ResponseError as e:
        wrong = wrong_types(store, [source, *(within or [])])
        return IndexPage(total=0, entries=[], problem=str(wrong[0].error if wrong else e))
    return IndexPage(total=total, entries=entries)


def _intersection(store, source, within, start, stop, descending):
    """(members, a page of them) of ``source`` that are in every ZSET of ``within``."""
    # Weights 0 and 1: the members of `within`, scored as in `source`.
    weights = {key: 0 for key in within} | {source: 1}
    scratch = store.keys.scratch(uuid.uuid4().hex)
    pipe = store.client.pipeline(transaction=True)
    pipe.zinterstore(scratch, weights)
    pipe.zrange(scratch, start, stop, desc=descending, withscores=True)
    pipe.delete(scratch)
    try:
        total, entries, _ = pipe.execute()
    except (redis.exceptions.OutOfMemoryError, redis.exceptions.ExecAbortError):
        # Redis is full and refuses the scratch key: the whole intersection comes back instead
        # (slower for a large one, but a read, which a full Redis still serves).
        members = store.client.zinter(weights, withscores=True)
        members = members[::-1] if descending else members
        return len(members), members[start : stop + 1]
    return total, entries


def find_by_prefix(store, prefix, *, limit):
    """Up to ``limit`` (conversation id, bytes) whose id starts with ``prefix``, largest first.

    From the census's id set, by lex range (O(log N)): a ZSCAN with MATCH would walk all ids and
    block Redis for as long. Sessions newer than the census are found by their exact id only.
    """
    start = b"[" + prefix.encode()
    try:
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
        pipe = store.client.pipeline(transaction=False)
        pipe.zmscore(store.keys.index_bytes, ids)
        pipe.zmscore(store.keys.census("legacy"), ids)
        sizes, blobs = pipe.execute()
    except redis.ResponseError:  # a key of another type: the page names the indexes' problems
        return []
    # A legacy blob is in the census's legacy set only (not in the bytes index).
    found = [
        (cid.decode(), size if size is not None else blob)
        for cid, size, blob in zip(ids, sizes, blobs, strict=True)
        if size is not None or blob is not None
    ]
    return sorted(found, key=lambda pair: -pair[1])
