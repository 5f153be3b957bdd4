"""The conversation store: the only module that talks to Redis about conversations.

A conversation is a state HASH, a LIST of turns and a shared, content-addressed bot_config;
each write is one Lua script that also updates both indexes and the TTL of all its keys.
"""

import functools
import hashlib
import itertools
import json
import operator
import time
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings
from django.core.cache import caches
from django.core.signals import setting_changed
from django.dispatch import receiver

from sessions_app.codec import Codec, CodecError, canonical_json, without_non_finite
from sessions_app.keys import KeyLayout
from sessions_app.tracing import traced

# Keys that live outside the state document, and keys that `load` adds for the caller.
SPLIT_KEYS = frozenset({"history", "bot_config"})
META_KEYS = frozenset({"_rev", "_turns"})


class StoreError(Exception):
    """Base class of the conversation store's errors."""


class SessionNotFound(StoreError):
    def __init__(self, conversation_id):
        super().__init__(f"conversation {conversation_id!r} does not exist")
        self.conversation_id = conversation_id


class StaleRevision(StoreError):
    """A state write carried a revision that another writer has moved on from."""

    def __init__(self, conversation_id, expected, actual):
        super().__init__(
            f"conversation {conversation_id!r} is at revision {actual}, not {expected}: "
            "load it again and reapply the change"
        )
        self.conversation_id = conversation_id
        self.expected = expected
        self.actual = actual


class CorruptSession(StoreError):
    """A stored value cannot be decoded; it is left in place for an operator to inspect."""

    def __init__(self, key, reason):
        super().__init__(f"corrupt value at Redis key {key!r}: {reason}")
        self.key = key


class StoreUnavailable(StoreError):
    """Redis did not answer."""


# Every script starts with this: it checks the type of each key before the first write, so a
# key of the wrong type fails the whole script (BADTYPE <key index> <type>) and never half of it,
# and reads a state field as a number only if it is one (BADFIELD <name>).
LUA_PRELUDE = """
local function expect_types(types, rest)
  for i = 1, #KEYS do
    local want = types[i] or rest
    local got = redis.call('TYPE', KEYS[i]).ok
    if want and got ~= 'none' and got ~= want then
      error({err = 'BADTYPE ' .. i .. ' ' .. got})
    end
  end
end
local function number_field(value, name)
  if value == false then return 0 end
  local n = tonumber(value)
  if n == nil or n ~= math.floor(n) then error({err = 'BADFIELD ' .. name}) end
  return n
end
"""

# One script for every write. KEYS: state, turns, index_bytes, index_seen, legacy blob.
# ARGV: cid, now, ttl, mode, rev, doc, cfg digest, cfg bytes, bot_config key prefix, turns...
# mode "replace" creates or replaces the whole conversation and drops its legacy blob (rev is
# ARGV[5] when new); "update" requires rev == ARGV[5]; "append" only adds turns. Empty doc/cfg
# keep the old ones.
# Sequence numbers are never reused, so the archive and Redis can never disagree on a turn.
WRITE_SCRIPT = """
expect_types({'hash', 'list', 'zset', 'zset', 'string'})
local state, turns = KEYS[1], KEYS[2]
local cid, now, ttl, mode = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local doc, cfg, cfg_bytes, cfg_prefix = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local cur = redis.call('HMGET', state, 'rev', 'seq', 'bytes', 'cfg')
local exists = cur[1] ~= false
local rev = number_field(cur[1], 'rev')
local seq, bytes = number_field(cur[2], 'seq'), number_field(cur[3], 'bytes')
if not exists and mode ~= 'replace' then
  return {1, 0, 0}
end
if mode == 'update' and rev ~= tonumber(ARGV[5]) then
  return {2, rev, seq}
end
if mode == 'replace' then
  redis.call('DEL', turns, KEYS[5])
  redis.call('HDEL', state, 'cfg')
  cur[4] = false
  bytes = 0
  if exists then rev = rev + 1 else rev = tonumber(ARGV[5]) end
  if not exists then redis.call('HSET', state, 'archived', 0) end
elseif mode == 'update' then
  rev = rev + 1
end
if doc ~= '' then
  bytes = bytes - redis.call('HSTRLEN', state, 'doc') + #doc
  redis.call('HSET', state, 'doc', doc)
end
if cfg ~= '' then
  redis.call('SET', cfg_prefix .. cfg, cfg_bytes, 'NX')
  redis.call('HSET', state, 'cfg', cfg)
  cur[4] = cfg
end
local first = seq
local items = {}
for i = 10, #ARGV do
  local item = string.format('%d|', seq) .. ARGV[i]
  items[#items + 1] = item
  bytes = bytes + #item
  seq = seq + 1
  if #items == 1000 then
    redis.call('RPUSH', turns, unpack(items))
    items = {}
  end
end
if #items > 0 then redis.call('RPUSH', turns, unpack(items)) end
redis.call('HSET', state, 'rev', rev, 'seq', seq, 'bytes', bytes)
redis.call('ZADD', KEYS[3], bytes, cid)
redis.call('ZADD', KEYS[4], now, cid)
if ttl > 0 then
  redis.call('EXPIRE', state, ttl)
  redis.call('EXPIRE', turns, ttl)
  if cur[4] then redis.call('EXPIRE', cfg_prefix .. cur[4], ttl) end
end
return {0, rev, first}
"""
OK, NOT_FOUND, STALE = 0, 1, 2
DROPPED, WRITTEN, GONE = 1, 0, -1
MAX_WINDOW = 2**53
# Legacy blobs go out in pipelines of about this many bytes: few round trips, bounded memory.
LEGACY_BATCH_BYTES = 8 * 1024 * 1024


def bot_config_digest(encoded):
    return hashlib.sha256(encoded).hexdigest()


def _safe_url(url):
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _check_cid(conversation_id):
    if not isinstance(conversation_id, str) or not conversation_id:
        raise ValueError(f"conversation_id must be a non-empty string, got {conversation_id!r}")
    if "{" in conversation_id or "}" in conversation_id:
        raise ValueError(f"conversation_id must not contain braces: {conversation_id!r}")
    return conversation_id


def _check_window(window):
    if window is None:
        return None
    if not isinstance(window, int) or isinstance(window, bool) or window < 0:
        raise ValueError(f"window must be None or an integer >= 0, got {window!r}")
    # LRANGE takes a 64-bit index; no conversation has anywhere near this many turns.
    return min(window, MAX_WINDOW)


def _check_rev(expected_rev):
    if not isinstance(expected_rev, int) or isinstance(expected_rev, bool):
        raise TypeError(f"expected_rev must be an int, got {expected_rev!r}")
    return expected_rev


def _int_field(key, name, raw):
    """A state hash field read as an int; CorruptSession when it is not one."""
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise CorruptSession(key, f"field {name!r} is not an integer: {raw!r}") from None


def _script_error(error, keys):
    """The store's error for a script's BADTYPE/BADFIELD reply (see LUA_PRELUDE)."""
    code, _, detail = str(error).partition(" ")
    if code == "BADTYPE":
        index, got = detail.split()[:2]
        reason = f"holds a {got}, not what the store keeps there"
        return CorruptSession(keys[int(index) - 1], reason)
    if code == "BADFIELD":
        return CorruptSession(keys[0], f"field {detail.split()[0]!r} is not an integer")
    return error


def _redis_boundary(method):
    """Turn redis-py's connection failures into the store's own error, naming the server."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise StoreUnavailable(f"Redis at {self.url} is unreachable: {e}") from e
        except redis.ResponseError as e:
            raise StoreError(f"Redis at {self.url} refused a command: {e}") from e

    return wrapper


class ConversationStore:
    """Loads and writes conversations in the split layout; reads legacy blobs transparently."""

    def __init__(self, cache, options, *, keys=None, ttl=0, bot_config_cache_size=256):
        """``cache`` is a django-redis cache, ``options`` the OPTIONS it was configured with."""
        self.cache = cache
        self.codec = Codec(options)
        self.keys = keys or KeyLayout()
        self.ttl = ttl
        self.url = _safe_url(cache._server[0] if isinstance(cache._server, list) else cache._server)
        self._scripts = {}
        self._bot_config = functools.lru_cache(maxsize=bot_config_cache_size)(
            self._fetch_bot_config
        )

    @property
    def client(self):
        return self.cache.client.get_client(write=True)

    # --- reads ------------------------------------------------------------------------

    @_redis_boundary
    def load(self, conversation_id, window=20):
        """The conversation as the robot has always seen it, with the last ``window`` turns.

        ``window=None`` returns every turn, archived ones first; the database is read only
        when the window reaches past the turns still in Redis. Returns None when there is none.
        The bot_config is shared between loads: treat it as read-only.
        """
        _check_cid(conversation_id)
        window = _check_window(window)
        with traced("robot-v2.load-conversation") as phase:
            phase("redis")
            state_key = self.keys.state(conversation_id)
            turns_key = self.keys.turns(conversation_id)
            legacy_key = self.keys.legacy(conversation_id)
            # No MULTI: the HMGET is atomic on its own and every turn carries its seq.
            pipe = self.client.pipeline(transaction=False)
            pipe.hmget(state_key, "doc", "rev", "seq", "cfg", "archived")
            keys = [state_key]
            if window != 0:
                pipe.lrange(turns_key, -window if window else 0, -1)
                keys.append(turns_key)
            pipe.get(legacy_key)
            replies = self._replies(pipe, [*keys, legacy_key])
            (doc, rev, seq, cfg, archived), *items, legacy = replies
            if doc is None:
                if legacy is None:
                    return None
                return self._load_legacy(conversation_id, legacy, window, phase)
            phase("decode")
            rev, seq = _int_field(state_key, "rev", rev), _int_field(state_key, "seq", seq)
            session = self._decode(state_key, doc)
            history = [self._decode_turn(turns_key, item) for item in items[0]] if items else []
            bot_config = None if cfg is None else self._bot_config(cfg.decode())
            if archived not in (None, b"0") and self._reaches_archive(history, seq, window):
                phase("archive")
                history = self._with_archive(conversation_id, history, seq, window)
            phase("assemble")
            if bot_config is not None:
                session["bot_config"] = bot_config
            session["history"] = history
            session["_rev"] = rev
            session["_turns"] = seq
            return session

    @_redis_boundary
    def size_breakdown(self, conversation_id):
        """Bytes of each part of a conversation as stored, and its turn counts and TTL."""
        _check_cid(conversation_id)
        state_key = self.keys.state(conversation_id)
        turns_key = self.keys.turns(conversation_id)
        legacy_key = self.keys.legacy(conversation_id)
        pipe = self.client.pipeline()
        pipe.hgetall(state_key)
        pipe.llen(turns_key)
        pipe.ttl(state_key)
        pipe.get(legacy_key)
        state, turns, ttl, legacy = self._replies(
            pipe, [state_key, turns_key, state_key, legacy_key]
        )
        if not state:
            if legacy is None:
                raise SessionNotFound(conversation_id)
            return self._legacy_breakdown(conversation_id, legacy)
        doc = self._decode(state_key, state.get(b"doc"))
        cfg = state.get(b"cfg")
        return {
            "layout": "split",
            "state": len(state[b"doc"]),
            "record": len(self._encode(doc.get("record"))),
            "history": _int_field(state_key, "bytes", state.get(b"bytes")) - len(state[b"doc"]),
            "bot_config": self.client.strlen(self.keys.bot_config(cfg.decode())) if cfg else 0,
            "turns": turns,
            "total_turns": _int_field(state_key, "seq", state.get(b"seq")),
            "archived": _int_field(state_key, "archived", state.get(b"archived")),
            "ttl": ttl,
        }

    @_redis_boundary
    def is_empty(self):
        """Whether Redis holds no conversation, in either layout."""
        if self.client.zcard(self.keys.index_bytes):
            return False
        legacy = self.client.scan_iter(match=self.keys.legacy_pattern, count=1000)
        return next(legacy, None) is None

    # --- writes -----------------------------------------------------------------------

    @_redis_boundary
    def save(self, session):
        """Create or replace a whole conversation; returns its new revision.

        A dict that ``load`` returned (it carries ``_rev``) is written back as a state update
        checked against that revision, plus the turns without a ``seq``, which are new: turns
        outside the loaded window are never dropped.
        """
        cid = _check_cid(session.get("conversation_id"))
        with traced("robot-v2.save-conversation"):
            if "_rev" in session:
                state = {k: v for k, v in session.items() if k not in SPLIT_KEYS}
                new_turns = [t for t in session.get("history") or [] if "seq" not in t]
                return self._update(
                    cid, state, session.get("bot_config"), new_turns, session["_rev"]
                )
            _, rev, _ = self._replace(cid, session, initial_rev=1)
            return rev

    @_redis_boundary
    def append_turns(self, conversation_id, turns):
        """Append turns in O(1) each; returns their sequence numbers."""
        _check_cid(conversation_id)
        turns = list(turns)
        if not turns:
            return []
        with traced("robot-v2.append-turns") as phase:
            phase("encode")
            args = ["", "", "", *self._encode_turns(turns)]
            phase("redis")
            status, _, first = self._run_write(conversation_id, "append", 0, args)
            if status == NOT_FOUND:
                if not self._migrate_legacy(conversation_id):
                    raise SessionNotFound(conversation_id)
                status, _, first = self._run_write(conversation_id, "append", 0, args)
        return list(range(first, first + len(turns)))

    @_redis_boundary
    def update_state(self, conversation_id, changes, expected_rev):
        """Apply top-level ``changes`` if the conversation is still at ``expected_rev``.

        Returns the new revision; raises StaleRevision when another writer came first.
        """
        _check_cid(conversation_id)
        _check_rev(expected_rev)
        if "history" in changes:
            raise ValueError("history is not state: add turns with append_turns()")
        if changes.get("conversation_id", conversation_id) != conversation_id:
            raise ValueError("conversation_id cannot be changed")
        with traced("robot-v2.update-state"):
            state_key = self.keys.state(conversation_id)
            doc, rev = self._read_doc(state_key)
            if doc is None:
                if not self._migrate_legacy(conversation_id):
                    raise SessionNotFound(conversation_id)
                doc, rev = self._read_doc(state_key)
            if rev != expected_rev:
                raise StaleRevision(conversation_id, expected_rev, rev)
            state = self._decode(state_key, doc)
            state.update((k, v) for k, v in changes.items() if k not in SPLIT_KEYS)
            return self._update(conversation_id, state, changes.get("bot_config"), [], expected_rev)

    @_redis_boundary
    def delete(self, conversation_id):
        """Remove a conversation from Redis; True when there was one."""
        _check_cid(conversation_id)
        pipe = self.client.pipeline()
        pipe.delete(
            self.keys.state(conversation_id),
            self.keys.turns(conversation_id),
            self.keys.legacy(conversation_id),
        )
        pipe.zrem(self.keys.index_bytes, conversation_id)
        pipe.zrem(self.keys.index_seen, conversation_id)
        deleted, *_ = pipe.execute()
        return deleted > 0

    @_redis_boundary
    def save_legacy(self, sessions):
        """Write sessions as the robot's old stdlib-json blobs: demo data and migration drills."""
        pipe = self.client.pipeline(transaction=False)
        pending = 0
        for session in sessions:
            blob = json.dumps(session)
            pipe.set(
                self.keys.legacy(_check_cid(session["conversation_id"])), blob, ex=self.ttl or None
            )
            pending += len(blob)
            if pending >= LEGACY_BATCH_BYTES:
                pipe.execute()
                pending = 0
        pipe.execute()

    # --- internals --------------------------------------------------------------------

    def _replies(self, pipe, keys):
        """Execute ``pipe``, whose commands read ``keys`` in order; a key of the wrong type is
        CorruptSession naming it, whatever the other commands returned."""
        replies = pipe.execute(raise_on_error=False)
        for reply, key in zip(replies, keys, strict=True):
            if isinstance(reply, redis.ResponseError):
                raise self._reply_error(key, reply)
        return replies

    def _reply_error(self, key, reply):
        """CorruptSession naming ``key`` for a WRONGTYPE reply; any other error as it is."""
        if not str(reply).startswith("WRONGTYPE"):
            return reply
        got = self.client.type(key).decode()
        return CorruptSession(key, f"holds a {got}, not what the store keeps there")

    def _read_doc(self, state_key):
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(state_key, "doc", "rev")
        ((doc, rev),) = self._replies(pipe, [state_key])
        return doc, None if doc is None else _int_field(state_key, "rev", rev)

    def _call(self, source, keys, args, client=None):
        """Run a script; its BADTYPE/BADFIELD replies become CorruptSession naming the key."""
        try:
            return self._script(source)(keys=keys, args=args, client=client)
        except redis.ResponseError as e:
            raise _script_error(e, keys) from e

    def _update(self, cid, state, bot_config, new_turns, expected_rev):
        args = [
            self._encode({k: v for k, v in state.items() if k not in META_KEYS}),
            *self._encode_bot_config(bot_config),
            *self._encode_turns(new_turns),
        ]
        status, rev, _ = self._run_write(cid, "update", expected_rev, args)
        if status == NOT_FOUND:
            if not self._migrate_legacy(cid):
                raise SessionNotFound(cid)
            status, rev, _ = self._run_write(cid, "update", expected_rev, args)
        if status == STALE:
            raise StaleRevision(cid, expected_rev, rev)
        return rev

    def _replace(self, cid, session, *, initial_rev, client=None):
        """Write a whole conversation (on ``client``, a pipeline, when given)."""
        state = {k: v for k, v in session.items() if k not in SPLIT_KEYS | META_KEYS}
        args = [
            self._encode(state),
            *self._encode_bot_config(session.get("bot_config")),
            *self._encode_turns(session.get("history") or []),
        ]
        return self._run_write(cid, "replace", initial_rev, args, client=client)

    def _run_write(self, cid, mode, rev, args, client=None):
        keys = self._write_keys(cid)
        argv = [cid, time.time(), self.ttl, mode, rev, args[0], args[1], args[2]]
        argv += [self.keys.bot_config_prefix, *args[3:]]
        if client is not None:
            return self._script(WRITE_SCRIPT)(keys=keys, args=argv, client=client)
        return self._call(WRITE_SCRIPT, keys, argv)

    def _write_keys(self, cid):
        return [
            self.keys.state(cid),
            self.keys.turns(cid),
            self.keys.index_bytes,
            self.keys.index_seen,
            self.keys.legacy(cid),
        ]

    def _migrate_legacy(self, cid):
        """Move a legacy blob to the split layout; False when there is none to move."""
        legacy_key = self.keys.legacy(cid)
        state_key = self.keys.state(cid)
        with self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(legacy_key, state_key)
                    if pipe.exists(state_key):
                        return True
                    if pipe.exists(legacy_key) == 0:
                        return False
                    if pipe.type(legacy_key) != b"string":
                        raise CorruptSession(legacy_key, "holds no string, so no legacy blob")
                    session = self._decode_legacy(cid, pipe.get(legacy_key))
                    pipe.multi()
                    # Revision 0 is what `load` reported for the legacy blob.
                    self._replace(cid, session, initial_rev=0, client=pipe)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue
                except redis.ResponseError as e:
                    raise _script_error(e, self._write_keys(cid)) from e

    def _load_legacy(self, cid, raw, window, phase):
        phase("decode")
        session = self._decode_legacy(cid, raw)
        phase("assemble")
        history = session.get("history") or []
        for seq, turn in enumerate(history):
            turn["seq"] = seq
        session["history"] = history if window is None else history[len(history) - window :]
        session["_rev"] = 0
        session["_turns"] = len(history)
        return session

    def _legacy_breakdown(self, cid, raw):
        session = self._decode_legacy(cid, raw)
        history = self._encode(session.get("history") or [])
        bot_config = self._encode(session.get("bot_config"))
        return {
            "layout": "legacy",
            "state": len(raw) - len(history) - len(bot_config),
            "record": len(self._encode(session.get("record"))),
            "history": len(history),
            "bot_config": len(bot_config),
            "turns": len(session.get("history") or []),
            "total_turns": len(session.get("history") or []),
            "archived": 0,
            "ttl": self.client.ttl(self.keys.legacy(cid)),
        }

    def _encode(self, value):
        return self.codec.encode(value)

    def _encode_turns(self, turns):
        for turn in turns:
            if not isinstance(turn, dict):
                raise TypeError(f"a turn must be a dict, got {type(turn).__qualname__}")
        return [self._encode({k: v for k, v in t.items() if k != "seq"}) for t in turns]

    def _encode_bot_config(self, bot_config):
        if bot_config is None:
            return ["", ""]
        return [bot_config_digest(canonical_json(bot_config)), self._encode(bot_config)]

    def _decode(self, key, raw):
        if raw is None:
            raise CorruptSession(key, "a value the store needs is missing")
        try:
            value = self.codec.decode(raw)
        except CodecError as e:
            raise CorruptSession(key, e) from e
        if not isinstance(value, dict):
            raise CorruptSession(key, f"expected a JSON object, got {type(value).__name__}")
        return value

    def _decode_turn(self, key, item):
        seq, sep, payload = item.partition(b"|")
        if not sep or not seq.isdigit():
            raise CorruptSession(key, "a turn is missing its sequence number")
        turn = self._decode(key, payload)
        turn["seq"] = int(seq)
        return turn

    def _decode_legacy(self, cid, raw):
        # NaN and Infinity, which the stdlib wrote and orjson cannot, read as None.
        session = without_non_finite(self._decode(self.keys.legacy(cid), raw))
        session.setdefault("conversation_id", cid)
        return session

    def _fetch_bot_config(self, digest):
        key = self.keys.bot_config(digest)
        pipe = self.client.pipeline(transaction=False)
        pipe.get(key)
        (raw,) = self._replies(pipe, [key])
        if raw is None:
            raise CorruptSession(key, "the shared bot_config is missing")
        return self._decode(key, raw)

    # --- operations (trim, compaction, indexes) ---

    # KEYS: state, turns. ARGV: pinned, keep, batch. The turns a trim would move next: at most
    # `batch` after the first `pinned`, never one of the last `keep`; nil when there is no state.
    _HEAD_SCRIPT = """
expect_types({'hash', 'list'})
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local first = tonumber(ARGV[1])
local stop = math.min(first + tonumber(ARGV[3]), redis.call('LLEN', KEYS[2]) - tonumber(ARGV[2]))
if stop <= first then return {} end
return redis.call('LRANGE', KEYS[2], first, stop - 1)
"""
    # KEYS: state, turns. ARGV: pinned, keep. How many turns, and bytes, a trim would move.
    _MEASURE_SCRIPT = """
expect_types({'hash', 'list'})
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local items = redis.call('LRANGE', KEYS[2], ARGV[1], -tonumber(ARGV[2]) - 1)
local bytes = 0
for _, item in ipairs(items) do bytes = bytes + #item end
return {#items, bytes}
"""
    # KEYS: state, turns, index_bytes. ARGV: cid, span, seqs... Removes, among the first `span`
    # items, exactly those whose seq was copied to the archive: appends land at the tail and a
    # concurrent trim's removals only shift items left, so they are all still in that span.
    # Items removed by another trim are simply not found, so nothing is removed twice.
    _REMOVE_SCRIPT = """
expect_types({'hash', 'list', 'zset'})
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
number_field(redis.call('HGET', KEYS[1], 'archived'), 'archived')
number_field(redis.call('HGET', KEYS[1], 'bytes'), 'bytes')
local copied = {}
for i = 3, #ARGV do copied[ARGV[i]] = true end
local removed, freed = 0, 0
for i, item in ipairs(redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[2]) - 1)) do
  local seq = string.match(item, '^(%d+)|')
  if seq and copied[seq] then
    redis.call('LSET', KEYS[2], i - 1, '~archived')
    removed = removed + 1
    freed = freed + #item
  end
end
if removed == 0 then return {0, 0} end
redis.call('LREM', KEYS[2], removed, '~archived')
redis.call('HINCRBY', KEYS[1], 'archived', removed)
redis.call('ZADD', KEYS[3], redis.call('HINCRBY', KEYS[1], 'bytes', -freed), ARGV[1])
return {removed, freed}
"""
    # KEYS: state, turns, index_bytes, index_seen. ARGV: cid, rev, seq. Deletes a session that
    # was archived whole, unless a write (which moves rev or seq) came after it was read:
    # 1 dropped, 0 written since, -1 already gone.
    _DROP_ARCHIVED_SCRIPT = """
expect_types({'hash', 'list', 'zset', 'zset'})
local cur = redis.call('HMGET', KEYS[1], 'rev', 'seq')
if cur[1] == false then return -1 end
if cur[1] ~= ARGV[2] or cur[2] ~= ARGV[3] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"""
    # KEYS: state, turns, index_bytes. ARGV: cid, old doc, new doc, then old/new item pairs.
    # Swaps in values re-encoded with the current codec, each only if it is still unchanged.
    _REENCODE_SCRIPT = """
expect_types({'hash', 'list', 'zset'})
number_field(redis.call('HGET', KEYS[1], 'bytes'), 'bytes')
local delta = 0
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'doc') == ARGV[2] then
  redis.call('HSET', KEYS[1], 'doc', ARGV[3])
  delta = #ARGV[3] - #ARGV[2]
end
for i = 4, #ARGV, 2 do
  local at = redis.call('LPOS', KEYS[2], ARGV[i], 'RANK', -1)
  if at then
    redis.call('LSET', KEYS[2], at, ARGV[i + 1])
    delta = delta + #ARGV[i + 1] - #ARGV[i]
  end
end
if delta ~= 0 then
  redis.call('ZADD', KEYS[3], redis.call('HINCRBY', KEYS[1], 'bytes', delta), ARGV[1])
end
return delta
"""
    # KEYS: index_bytes, index_seen, state keys... ARGV: now, cids... Indexes each session
    # that has a state, keeping a known last-write time.
    _INDEX_SCRIPT = """
expect_types({'zset', 'zset'})
local indexed = 0
for i = 2, #ARGV do
  local bytes = false
  if redis.call('TYPE', KEYS[i + 1]).ok == 'hash' then
    bytes = tonumber(redis.call('HGET', KEYS[i + 1], 'bytes'))
  end
  if bytes then
    redis.call('ZADD', KEYS[1], bytes, ARGV[i])
    redis.call('ZADD', KEYS[2], 'NX', ARGV[1], ARGV[i])
    indexed = indexed + 1
  end
end
return indexed
"""
    # KEYS: index_bytes, index_seen, state keys... ARGV: cids... Drops the index entries of
    # sessions whose state is gone (expired or deleted by other code).
    _PRUNE_SCRIPT = """
expect_types({'zset', 'zset'})
local pruned = 0
for i = 1, #ARGV do
  if redis.call('EXISTS', KEYS[i + 2]) == 0 then
    pruned = pruned + redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
  end
end
return pruned
"""

    def _script(self, source):
        if source not in self._scripts:
            self._scripts[source] = self.client.register_script(LUA_PRELUDE + source)
        return self._scripts[source]

    def _reaches_archive(self, history, seq, window):
        """Whether the last ``window`` turns are not all among those read from Redis."""
        wanted = seq if window is None else min(window, seq)
        return len(history) < wanted or (bool(history) and history[0]["seq"] != seq - wanted)

    def _with_archive(self, conversation_id, history, seq, window):
        # Imported on use: this module is imported before Django's apps are ready.
        from sessions_app.selectors import archived_turns

        first = 0 if window is None else max(seq - window, 0)
        in_redis = {turn["seq"] for turn in history}
        merged = [
            t for t in archived_turns(conversation_id, from_seq=first) if t["seq"] not in in_redis
        ]
        merged += [turn for turn in history if turn["seq"] >= first]
        # Pinned turns stay at the head in Redis, so the two parts can interleave.
        merged.sort(key=operator.itemgetter("seq"))
        return merged

    @_redis_boundary
    def next_seq(self, conversation_id):
        """The seq the next appended turn will get."""
        state_key = self.keys.state(_check_cid(conversation_id))
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(state_key, "seq")
        (seq,) = self._replies(pipe, [state_key])
        if seq is None:
            raise SessionNotFound(conversation_id)
        return _int_field(state_key, "seq", seq)

    @_redis_boundary
    def trim_candidates(self, conversation_id, *, keep, pinned, batch, below):
        """Up to ``batch`` decoded turns, each with a seq under ``below``, that trimming to
        ``keep`` (after the first ``pinned``) would move."""
        _check_cid(conversation_id)
        keys = [self.keys.state(conversation_id), self.keys.turns(conversation_id)]
        items = self._call(self._HEAD_SCRIPT, keys, [pinned, keep, batch])
        if items is None:
            raise SessionNotFound(conversation_id)
        turns = (self._decode_turn(keys[1], item) for item in items)
        return [turn for turn in turns if turn["seq"] < below]

    @_redis_boundary
    def measure_trim(self, conversation_id, *, keep, pinned):
        """(turns, bytes) a trim to ``keep`` after ``pinned`` would move, measured in Redis."""
        _check_cid(conversation_id)
        keys = [self.keys.state(conversation_id), self.keys.turns(conversation_id)]
        measured = self._call(self._MEASURE_SCRIPT, keys, [pinned, keep])
        if measured is None:
            raise SessionNotFound(conversation_id)
        return tuple(measured)

    @_redis_boundary
    def remove_archived(self, conversation_id, seqs, *, pinned):
        """Remove the turns ``seqs``, already copied to the archive; returns (removed, bytes)."""
        _check_cid(conversation_id)
        keys = [
            self.keys.state(conversation_id),
            self.keys.turns(conversation_id),
            self.keys.index_bytes,
        ]
        removed, freed = self._call(
            self._REMOVE_SCRIPT, keys, [conversation_id, pinned + len(seqs), *seqs]
        )
        return removed, freed

    @_redis_boundary
    def session_sizes(self, conversation_ids):
        """A SessionSize per id, in order; ``exists`` is False where the state is gone, and
        ``corrupt`` holds the CorruptSession of one whose keys cannot be read."""
        conversation_ids = [_check_cid(cid) for cid in conversation_ids]
        if not conversation_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for cid in conversation_ids:
            pipe.hget(self.keys.state(cid), "bytes")
            pipe.llen(self.keys.turns(cid))
        pipe.zmscore(self.keys.index_seen, conversation_ids)
        *replies, seen = pipe.execute(raise_on_error=False)
        if isinstance(seen, redis.ResponseError):
            raise self._reply_error(self.keys.index_seen, seen)
        return [
            self._session_size(cid, replies[2 * i], replies[2 * i + 1], seen[i])
            for i, cid in enumerate(conversation_ids)
        ]

    def _session_size(self, cid, size, turns, seen):
        state_key, turns_key = self.keys.state(cid), self.keys.turns(cid)
        try:
            for key, reply in ((state_key, size), (turns_key, turns)):
                if isinstance(reply, redis.ResponseError):
                    raise self._reply_error(key, reply)
            exists = size is not None
            size = _int_field(state_key, "bytes", size) if exists else 0
        except CorruptSession as e:
            return SessionSize(cid, 0, 0, seen, True, e)
        return SessionSize(cid, size, turns, seen, exists)

    @_redis_boundary
    def scan_index(self, cursor=0, *, batch=500):
        """One ZSCAN step of the bytes index: (next cursor, 0 at the end; a SessionSize each).

        As with any SCAN, a member may come twice while the set is being rehashed.
        """
        cursor, members = self.client.zscan(self.keys.index_bytes, cursor, count=batch)
        return cursor, self.session_sizes([member.decode() for member, _ in members])

    @_redis_boundary
    def index_entries(self):
        """Every (conversation id, bytes) of the bytes index, smallest first."""
        entries = self.client.zrange(self.keys.index_bytes, 0, -1, withscores=True)
        return [(cid.decode(), int(size)) for cid, size in entries]

    @_redis_boundary
    def bot_config_digests(self, conversation_ids):
        """The bot_config digest of each conversation, in order: None where it has none, and
        the CorruptSession where its state cannot be read."""
        pipe = self.client.pipeline(transaction=False)
        for cid in conversation_ids:
            pipe.hget(self.keys.state(cid), "cfg")
            pipe.llen(self.keys.turns(cid))
        replies = pipe.execute(raise_on_error=False)
        return [
            self._digest(cid, replies[2 * i], replies[2 * i + 1])
            for i, cid in enumerate(conversation_ids)
        ]

    def _digest(self, cid, digest, turns):
        for key, reply in ((self.keys.state(cid), digest), (self.keys.turns(cid), turns)):
            if isinstance(reply, redis.ResponseError):
                return self._reply_error(key, reply)
        return None if digest is None else digest.decode()

    @_redis_boundary
    def prune_index(self, conversation_ids):
        """Drop index entries whose session is gone; returns how many were dropped."""
        if not conversation_ids:
            return 0
        keys = [self.keys.index_bytes, self.keys.index_seen]
        keys += [self.keys.state(cid) for cid in conversation_ids]
        return self._call(self._PRUNE_SCRIPT, keys, conversation_ids)

    @_redis_boundary
    def rebuild_indexes(self, *, batch=500):
        """Index every state key found by SCAN, then prune entries whose state is gone."""
        indexed = pruned = 0
        found = self.client.scan_iter(match=self.keys.state_pattern, count=batch)
        for keys in itertools.batched(found, batch):
            cids = [self.keys.cid_from_state(key.decode()) for key in keys]
            indexed += self._call(
                self._INDEX_SCRIPT,
                [self.keys.index_bytes, self.keys.index_seen, *keys],
                [time.time(), *cids],
            )
        cursor = None
        while cursor != 0:
            cursor, sizes = self.scan_index(cursor or 0, batch=batch)
            pruned += self.prune_index([size.conversation_id for size in sizes if not size.exists])
        return {"indexed": indexed, "pruned": pruned}

    @_redis_boundary
    def scan_legacy(self, cursor=0, *, batch=500):
        """One SCAN step over the legacy blobs: (next cursor, 0 at the end; their ids)."""
        cursor, keys = self.client.scan(cursor, match=self.keys.legacy_pattern, count=batch)
        return cursor, [self.keys.cid_from_legacy(key.decode()) for key in keys]

    @_redis_boundary
    def is_legacy(self, conversation_id):
        """Whether a legacy blob is stored for this conversation."""
        return bool(self.client.exists(self.keys.legacy(_check_cid(conversation_id))))

    @_redis_boundary
    def legacy_size(self, conversation_id):
        """Bytes of the legacy blob a migration would move: 0 when there is none to move."""
        _check_cid(conversation_id)
        legacy_key = self.keys.legacy(conversation_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.strlen(legacy_key)
        pipe.exists(self.keys.state(conversation_id))
        size, split = self._replies(pipe, [legacy_key, None])
        return 0 if split else size

    @_redis_boundary
    def legacy_totals(self, *, batch=500):
        """(blobs, bytes) of the legacy blobs still in Redis, found by SCAN."""
        blobs = size = 0
        for keys in itertools.batched(
            self.client.scan_iter(match=self.keys.legacy_pattern, count=batch), batch
        ):
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.strlen(key)
            # A key of another type that matches the pattern is no blob of ours: not counted.
            sizes = [n for n in pipe.execute(raise_on_error=False) if isinstance(n, int)]
            blobs += len(sizes)
            size += sum(sizes)
        return blobs, size

    @_redis_boundary
    def migrate_legacy(self, conversation_id):
        """Move a legacy blob to the split layout; the bytes of the blob moved (0: none)."""
        size = self.legacy_size(conversation_id)
        return size if size and self._migrate_legacy(conversation_id) else 0

    @_redis_boundary
    def check_state(self, conversation_id):
        """Raise CorruptSession unless the state decodes (SessionNotFound: there is none)."""
        state_key = self.keys.state(_check_cid(conversation_id))
        doc, _ = self._read_doc(state_key)
        if doc is None:
            raise SessionNotFound(conversation_id)
        self._decode(state_key, doc)

    @_redis_boundary
    def reencode(self, conversation_id):
        """Re-encode the state doc and the turns in Redis with the current codec; bytes saved."""
        _check_cid(conversation_id)
        state_key, turns_key = self.keys.state(conversation_id), self.keys.turns(conversation_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(state_key, "doc")
        pipe.lrange(turns_key, 0, -1)
        doc, items = self._replies(pipe, [state_key, turns_key])
        if doc is None:
            raise SessionNotFound(conversation_id)
        new_doc = self._encode(self._decode(state_key, doc))
        args = [conversation_id, *((doc, new_doc) if new_doc != doc else ("", ""))]
        for item in items:
            turn = self._decode_turn(turns_key, item)
            new_item = b"%d|%s" % (turn["seq"], self._encode_turns([turn])[0])
            if new_item != item:
                args += [item, new_item]
        if args[1:] == ["", ""]:
            return 0
        keys = [state_key, turns_key, self.keys.index_bytes]
        return -self._call(self._REENCODE_SCRIPT, keys, args)

    @_redis_boundary
    def snapshot(self, conversation_id):
        """The whole session as it is in Redis, every turn decoded, with its rev and next seq."""
        _check_cid(conversation_id)
        state_key = self.keys.state(conversation_id)
        turns_key = self.keys.turns(conversation_id)
        pipe = self.client.pipeline()
        pipe.hgetall(state_key)
        pipe.lrange(turns_key, 0, -1)
        pipe.zscore(self.keys.index_seen, conversation_id)
        state, items, seen = self._replies(pipe, [state_key, turns_key, self.keys.index_seen])
        if not state:
            raise SessionNotFound(conversation_id)
        session = self._decode(state_key, state.get(b"doc"))
        if b"cfg" in state:
            session["bot_config"] = self._bot_config(state[b"cfg"].decode())
        session["history"] = [self._decode_turn(turns_key, item) for item in items]
        rev, seq, size = (
            _int_field(state_key, name, state.get(name.encode()))
            for name in ("rev", "seq", "bytes")
        )
        return Snapshot(session, rev, seq, size, seen)

    @_redis_boundary
    def drop_archived(self, conversation_id, *, rev, seq):
        """Delete a session archived whole, unless it was written since.

        Returns DROPPED, WRITTEN (it stays: written since it was read) or GONE (no state).
        """
        keys = [
            self.keys.state(conversation_id),
            self.keys.turns(conversation_id),
            self.keys.index_bytes,
            self.keys.index_seen,
        ]
        return self._call(self._DROP_ARCHIVED_SCRIPT, keys, [conversation_id, rev, seq])

    @_redis_boundary
    def restore(self, session, *, rev, next_seq, turns):
        """Put an archived session back with its ``rev``, its seq counter and some of its turns.

        Refuses, with StoreError, when the conversation is already in Redis.
        """
        cid = _check_cid(session.get("conversation_id"))
        state_key, turns_key = self.keys.state(cid), self.keys.turns(cid)
        doc = self._encode({k: v for k, v in session.items() if k not in SPLIT_KEYS | META_KEYS})
        digest, cfg = self._encode_bot_config(session.get("bot_config"))
        items = [
            b"%d|%s" % (t["seq"], item)
            for t, item in zip(turns, self._encode_turns(turns), strict=True)
        ]
        fields = {
            "doc": doc,
            "rev": rev,
            "seq": next_seq,
            "archived": next_seq - len(items),
            "bytes": len(doc) + sum(map(len, items)),
        }
        with self.client.pipeline() as pipe:
            pipe.watch(state_key, turns_key, self.keys.legacy(cid))
            if pipe.exists(state_key, self.keys.legacy(cid)):
                raise StoreError(f"conversation {cid!r} is already in Redis")
            if pipe.exists(turns_key):
                # Turns without a state: not the store's to overwrite.
                raise CorruptSession(turns_key, "holds turns of a conversation with no state")
            pipe.multi()
            if digest:
                fields["cfg"] = digest
                pipe.set(self.keys.bot_config(digest), cfg, nx=True)
            pipe.hset(state_key, mapping=fields)
            pipe.delete(turns_key)
            if items:
                pipe.rpush(turns_key, *items)
            pipe.zadd(self.keys.index_bytes, {cid: fields["bytes"]})
            pipe.zadd(self.keys.index_seen, {cid: time.time()})
            if self.ttl:
                for key in (
                    state_key,
                    turns_key,
                    *([self.keys.bot_config(digest)] if digest else []),
                ):
                    pipe.expire(key, self.ttl)
            try:
                pipe.execute()
            except redis.WatchError as e:
                raise StoreError(f"conversation {cid!r} was written while it was restored") from e
        return fields["bytes"]

    # --- bulk writes (added for the admin: its benchmark seeds 100,000 sessions) ----------

    @_redis_boundary
    def save_many(self, sessions, *, batch=500):
        """Create or replace many conversations, ``batch`` of them per round trip.

        The same write script as `save`, pipelined, so seeding costs a round trip per batch
        rather than per session. Returns how many were written.
        """
        written = 0
        for chunk in itertools.batched(sessions, batch):
            pipe = self.client.pipeline(transaction=False)
            for session in chunk:
                cid = _check_cid(session.get("conversation_id"))
                self._replace(cid, session, initial_rev=1, client=pipe)
            pipe.execute()
            written += len(chunk)
        return written


class SessionSize(NamedTuple):
    """A session's size in Redis, as the operations scan it."""

    conversation_id: str
    bytes: int
    turns: int
    seen: float | None
    exists: bool
    corrupt: CorruptSession | None = None
    """Why its keys cannot be read, when they cannot."""


class Snapshot(NamedTuple):
    """A whole session read for archiving, with what a later write would change."""

    session: dict
    rev: int
    next_seq: int
    bytes: int
    seen: float | None


@functools.cache
def get_store():
    """The process's store, built on the cache alias named in ``ROBOTPERF_STORE``."""
    config = settings.ROBOTPERF_STORE
    alias = config["CACHE_ALIAS"]
    return ConversationStore(
        caches[alias],
        settings.CACHES[alias]["OPTIONS"],
        keys=KeyLayout(prefix=config["KEY_PREFIX"], legacy_format=config["LEGACY_KEY_FORMAT"]),
        ttl=config["TTL"],
        bot_config_cache_size=config["BOT_CONFIG_CACHE_SIZE"],
    )


@receiver(setting_changed)
def _reset_store(*, setting, **kwargs):
    if setting in {"ROBOTPERF_STORE", "CACHES"}:
        get_store.cache_clear()
