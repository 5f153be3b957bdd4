"""A census of every session in Redis for the admin: totals per bot, the turns and oversized sets.

Counting 100,000 sessions takes about a second, too long for a page view, so the census is built
in the background (a beat job every few minutes) and kept in Redis; a small store is recounted
inline when its census is stale. Page views only read it; operations re-count what they touched.
"""

import itertools
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, fields

import orjson
import redis

from convstore.exceptions import StoreError
from convstore.keys import BYTES, CFG
from sessions_app import indexes
from sessions_app.maintenance import SessionSize

MAX_AGE = 300
"""Seconds after which a census is stale (the beat job recounts every 5 minutes)."""
INLINE_LIMIT = 20_000
"""Up to this many sessions, a page view that finds the census stale recounts (~0.1 s)."""
BATCH = 1000
NO_BOT = "(no bot_config)"
UNREADABLE = "(unreadable)"
# Redis refused the census's own writes for memory: the page shows the census it has.
FULL = (redis.exceptions.OutOfMemoryError, redis.exceptions.ExecAbortError)
log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class BotTotal:
    digest: str
    """The bot_config digest shared by these sessions; '' for sessions without one."""
    bot_id: str
    """The ``bot_id`` of one of them: two bots with one bot_config are counted together."""
    sessions: int
    bytes: int


@dataclass(frozen=True, kw_only=True)
class Census:
    built_at: float
    seconds: float
    sessions: int
    total_bytes: int
    oversized: int
    broken: int
    """Index entries whose state is gone or whose keys hold another type."""
    legacy: int
    """Legacy blobs still to move to the split layout (found by SCAN)."""
    bots: list[BotTotal]
    stale: bool = False
    """An operation changed sessions since it was built (its sets are up to date)."""


def current(store, policy, *, now=None, max_age=MAX_AGE, inline_limit=INLINE_LIMIT):
    """The census, recounted first when stale and the store is small; None if never built."""
    census = read(store)
    now = time.time() if now is None else now
    if census is not None and not census.stale and census.built_at > now - max_age:
        return census
    pipe = store.client.pipeline(transaction=False)
    (count,) = pipe.zcard(store.keys.index_bytes).execute(raise_on_error=False)
    # An index of another type says nothing of the store's size: left to the beat job.
    if isinstance(count, int) and count <= inline_limit:
        try:
            return build(store, policy)
        except FULL as e:
            log.warning("census not recounted: %s", e)
    return census


def read(store):
    """The census in Redis; None when there is none, or none this code can read (it is then
    counted again, and replaced, as a missing one is)."""
    summary, stale = store.client.mget(store.keys.census("summary"), store.keys.census("stale"))
    if summary is None:
        return None
    try:
        data = orjson.loads(summary)
        bots = [_checked(BotTotal, bot) for bot in data.pop("bots")]
        return _checked(Census, {**data, "bots": bots, "stale": stale is not None})
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError) as e:
        log.warning("census summary %s unreadable, counted again: %s", summary[:100], e)
        return None


def _checked(cls, data):
    """``cls(**data)``; TypeError unless each of its str, int and float fields holds one."""
    value = cls(**data)
    kinds = {str: str, int: int, float: int | float, bool: bool}
    for field in fields(cls):
        if field.type in kinds and not isinstance(getattr(value, field.name), kinds[field.type]):
            raise TypeError(f"{cls.__name__}.{field.name} is {getattr(value, field.name)!r}")
    return value


def build(store, policy):
    """Count every session of the bytes index, and swap the new sets in at once."""
    building = {}  # set name (turns, oversized, a bot_config digest) -> key being built
    try:
        census = _count(store, policy, building)
        _swap_in(store, census, building)
    except FULL:
        # Redis refused a write for memory; it still takes deletes: nothing is left half-built.
        if building:
            store.client.delete(*building.values())
        raise
    return census


def _count(store, policy, building):
    started = time.monotonic()
    keys, client = store.keys, store.client
    token = uuid.uuid4().hex
    entries, bad = indexes.all_entries(store)
    groups = defaultdict(lambda: [0, 0, None])  # digest -> sessions, bytes, a sample id
    sessions = total = oversized = 0
    broken = len(bad)  # members that name no session
    for chunk in itertools.batched([cid for cid, _ in entries], BATCH):
        ids, turns_of, oversized_of, by_bot = {}, {}, {}, defaultdict(dict)
        for cid, digest, turns, size in _read(store, chunk):
            ids[cid] = 0  # one score: ordered by id, for the list's search by prefix
            if size < 0:
                broken += 1
                continue
            sessions += 1
            total += size
            turns_of[cid] = turns
            by_bot[digest][cid] = size
            group = groups[digest]
            group[0] += 1
            group[1] += size
            group[2] = group[2] or cid
            if policy.is_oversized(_size(cid, size, turns)):
                oversized += 1
                oversized_of[cid] = size
        pipe = client.pipeline(transaction=False)
        sets = [("ids", ids), ("turns", turns_of), ("oversized", oversized_of), *by_bot.items()]
        for name, members in sets:
            if members:
                key = building.setdefault(name, keys.census(f"build:{token}:{name}"))
                pipe.zadd(key, members)
                pipe.expire(key, 3600)  # a build that dies half-way leaves nothing for long
        pipe.execute()
    bots = [
        BotTotal(digest=digest, bot_id=bot_name(store, digest, sample), sessions=n, bytes=size)
        for digest, (n, size, sample) in sorted(groups.items(), key=lambda g: -g[1][1])
    ]
    legacy = _count_legacy(store, building, token)
    return Census(
        built_at=time.time(),
        seconds=round(time.monotonic() - started, 3),
        sessions=sessions,
        total_bytes=total,
        oversized=oversized,
        broken=broken,
        legacy=legacy,
        bots=bots,
    )


def touch(store, policy, conversation_ids):
    """Re-count these sessions in the census sets after an operation changed them.

    The totals wait for the next count: the census is marked stale, so a small store recounts
    on the next page view.
    """
    census = read(store)
    if census is None or not conversation_ids:
        return
    keys = store.keys
    pipe = store.client.pipeline(transaction=False)
    check = store.client.pipeline(transaction=False)
    for cid in conversation_ids:
        check.exists(keys.legacy(cid))
    found = check.execute(raise_on_error=False)
    gone = [cid for cid, n in zip(conversation_ids, found, strict=True) if n == 0]
    if gone:  # migrated or deleted: no longer a legacy blob to list
        pipe.zrem(keys.census("legacy"), *gone)
    for cid, digest, turns, size in _read(store, conversation_ids):
        for bot in census.bots:
            pipe.zrem(keys.census_bot(bot.digest), cid)
        if size < 0:
            pipe.zrem(keys.census("turns"), cid)
            pipe.zrem(keys.census("oversized"), cid)
            if not store.client.exists(keys.state(cid), keys.legacy(cid)):
                pipe.zrem(keys.census("ids"), cid)
            continue
        pipe.zadd(keys.census("ids"), {cid: 0})
        pipe.zadd(keys.census("turns"), {cid: turns})
        pipe.zadd(keys.census_bot(digest), {cid: size})
        if policy.is_oversized(_size(cid, size, turns)):
            pipe.zadd(keys.census("oversized"), {cid: size})
        else:
            pipe.zrem(keys.census("oversized"), cid)
    pipe.set(keys.census("stale"), 1)
    # What was done is done: a census key that refuses (Redis full, another type) waits for
    # the next count, which replaces every census key.
    failed = [reply for reply in pipe.execute(raise_on_error=False) if isinstance(reply, Exception)]
    if failed:
        log.warning("census not re-counted for %s: %s", conversation_ids, failed[0])


def _size(cid, size, turns):
    return SessionSize(conversation_id=cid, bytes=size, turns=turns, seen=None, exists=True)


def _read(store, conversation_ids):
    """(cid, digest, turns, bytes) of each session, a pipeline per batch; -1, -1 where its state
    is gone or one of its keys holds another type, so one broken session spoils no batch."""
    for chunk in itertools.batched(conversation_ids, BATCH):
        pipe = store.client.pipeline(transaction=False)
        for cid in chunk:
            pipe.hmget(store.keys.state(cid), CFG, BYTES)
            pipe.llen(store.keys.turns(cid))
        replies = pipe.execute(raise_on_error=False)
        for i, cid in enumerate(chunk):
            yield cid, *_counted(replies[2 * i], replies[2 * i + 1])


def _counted(fields, turns):
    """(digest, turns, bytes) of one session's replies; "", -1, -1 if they are no session's."""
    if isinstance(fields, Exception) or isinstance(turns, Exception) or not fields[1]:
        return "", -1, -1
    digest, size = fields
    try:
        return (digest or b"").decode(), turns, int(size) if size.isdigit() else -1
    except UnicodeDecodeError:  # a digest that is no text: a corrupt state
        return "", -1, -1


def bot_name(store, digest, conversation_id):
    """What to call the sessions of a bot_config: the ``bot_id`` of one of them."""
    try:
        return bot_of(store, digest, conversation_id)
    except StoreError:
        return UNREADABLE


def bot_of(store, digest, conversation_id):
    """``bot_name``, or the StoreError that keeps it from being read."""
    if not digest:
        return NO_BOT
    session = store.load(conversation_id, window=0)
    return str(session.get("bot_id", NO_BOT)) if session else NO_BOT


def _count_legacy(store, building, token):
    """Count the legacy blobs, into the ``legacy`` set (id -> blob bytes) and the ``ids`` set, so
    the list filters them and finds them by prefix."""
    keys, counted = store.keys, 0
    found = store.client.scan_iter(match=keys.legacy_pattern, count=BATCH)
    for chunk in itertools.batched(found, BATCH):
        pipe = store.client.pipeline(transaction=False)
        for key in chunk:
            pipe.strlen(key)
        sizes = pipe.execute(raise_on_error=False)
        blobs = {
            keys.cid_from_legacy(key.decode()): size
            for key, size in zip(chunk, sizes, strict=True)
            if isinstance(size, int)  # another type: named by session_stats, not a blob here
        }
        counted += len(chunk)
        if not blobs:
            continue
        pipe = store.client.pipeline(transaction=False)
        for name, members in (("legacy", blobs), ("ids", dict.fromkeys(blobs, 0))):
            key = building.setdefault(name, keys.census(f"build:{token}:{name}"))
            pipe.zadd(key, members)
            pipe.expire(key, 3600)
        pipe.execute()
    return counted


def _swap_in(store, census, building):
    """Replace the census in one MULTI: readers see the old one or the new one, never a mix."""
    keys = store.keys
    old = read(store)
    final = {name: keys.census(name) for name in ("ids", "turns", "oversized", "legacy")}
    final |= {bot.digest: keys.census_bot(bot.digest) for bot in census.bots}
    if old is not None:
        left = [keys.census_bot(bot.digest) for bot in old.bots]
    else:  # none, or none readable: the sets of bots that left are found by their name
        left = [key.decode() for key in store.client.scan_iter(match=keys.census_bot("*"))]
    pipe = store.client.pipeline(transaction=True)
    for key in set(left) - set(final.values()):
        pipe.delete(key)
    for name, key in final.items():
        if name in building:
            # By name: redis-py's cluster pipeline blocks its rename() even when, as here
            # (the census keys share one hash tag), both keys are in one slot.
            pipe.execute_command("RENAME", building[name], key)
            pipe.persist(key)
        else:
            pipe.delete(key)
    summary = {k: v for k, v in asdict(census).items() if k != "stale"}
    pipe.set(keys.census("summary"), orjson.dumps(summary))
    pipe.delete(keys.census("stale"))
    pipe.execute()
