"""The conversation store: the only module that talks to Redis about conversations.

A conversation is a state HASH, a LIST of turns and a shared, content-addressed bot_config;
each write is one Lua script that also updates both indexes and the TTL of all its keys.
"""

import functools
import hashlib
import time
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings
from django.core.cache import caches
from django.core.signals import setting_changed
from django.dispatch import receiver

from sessions_app.codec import Codec, CodecError, canonical_json
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


# One script for every write. KEYS: state, turns, index_bytes, index_seen.
# ARGV: cid, now, ttl, mode, rev, doc, cfg digest, cfg bytes, bot_config key prefix, turns...
# mode "replace" creates or replaces the whole conversation (rev = ARGV[5] when new);
# "update" requires rev == ARGV[5]; "append" only adds turns. Empty doc/cfg keep the old ones.
# Sequence numbers are never reused, so the archive and Redis can never disagree on a turn.
WRITE_SCRIPT = """
local state, turns = KEYS[1], KEYS[2]
local cid, now, ttl, mode = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local doc, cfg, cfg_bytes, cfg_prefix = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local exists = redis.call('EXISTS', state) == 1
local rev, seq, bytes = 0, 0, 0
if exists then
  local cur = redis.call('HMGET', state, 'rev', 'seq', 'bytes')
  rev, seq, bytes = tonumber(cur[1]), tonumber(cur[2]), tonumber(cur[3])
elseif mode ~= 'replace' then
  return {1, 0, 0}
end
if mode == 'update' and rev ~= tonumber(ARGV[5]) then
  return {2, rev, seq}
end
if mode == 'replace' then
  redis.call('DEL', turns)
  redis.call('HDEL', state, 'cfg')
  bytes = 0
  if exists then rev = rev + 1 else rev = tonumber(ARGV[5]) end
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
end
local first = seq
for i = 10, #ARGV do
  local item = string.format('%d|', seq) .. ARGV[i]
  redis.call('RPUSH', turns, item)
  bytes = bytes + #item
  seq = seq + 1
end
redis.call('HSET', state, 'rev', rev, 'seq', seq, 'bytes', bytes)
redis.call('HSETNX', state, 'archived', 0)
redis.call('ZADD', KEYS[3], bytes, cid)
redis.call('ZADD', KEYS[4], now, cid)
if ttl > 0 then
  redis.call('EXPIRE', state, ttl)
  redis.call('EXPIRE', turns, ttl)
  local current_cfg = redis.call('HGET', state, 'cfg')
  if current_cfg then redis.call('EXPIRE', cfg_prefix .. current_cfg, ttl) end
end
return {0, rev, first}
"""
OK, NOT_FOUND, STALE = 0, 1, 2


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
    if window is not None and (not isinstance(window, int) or window < 0):
        raise ValueError(f"window must be None or an integer >= 0, got {window!r}")


def _redis_boundary(method):
    """Turn redis-py's connection failures into the store's own error, naming the server."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise StoreUnavailable(f"Redis at {self.url} is unreachable: {e}") from e

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
        self._write = self.client.register_script(WRITE_SCRIPT)
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

        ``window=None`` returns every turn still in Redis. Returns None when there is none.
        The bot_config is shared between loads: treat it as read-only.
        """
        _check_cid(conversation_id)
        _check_window(window)
        with traced("robot-v2.load-conversation") as phase:
            phase("redis")
            state_key = self.keys.state(conversation_id)
            # No MULTI: the HMGET is atomic on its own and every turn carries its seq.
            pipe = self.client.pipeline(transaction=False)
            pipe.hmget(state_key, "doc", "rev", "seq", "cfg", "archived")
            if window != 0:
                pipe.lrange(self.keys.turns(conversation_id), -window if window else 0, -1)
            pipe.get(self.keys.legacy(conversation_id))
            (doc, rev, seq, cfg, archived), *items, legacy = pipe.execute()
            if doc is None:
                if legacy is None:
                    return None
                return self._load_legacy(conversation_id, legacy, window, phase)
            phase("decode")
            session = self._decode(state_key, doc)
            history = [self._decode_turn(state_key, item) for item in items[0]] if items else []
            bot_config = None if cfg is None else self._bot_config(cfg.decode())
            phase("assemble")
            if bot_config is not None:
                session["bot_config"] = bot_config
            session["history"] = history
            session["_rev"] = int(rev)
            session["_turns"] = int(seq)
            return session

    @_redis_boundary
    def size_breakdown(self, conversation_id):
        """Bytes of each part of a conversation as stored, and its turn counts and TTL."""
        _check_cid(conversation_id)
        state_key = self.keys.state(conversation_id)
        pipe = self.client.pipeline()
        pipe.hgetall(state_key)
        pipe.llen(self.keys.turns(conversation_id))
        pipe.ttl(state_key)
        pipe.get(self.keys.legacy(conversation_id))
        state, turns, ttl, legacy = pipe.execute()
        if not state:
            if legacy is None:
                raise SessionNotFound(conversation_id)
            return self._legacy_breakdown(conversation_id, legacy)
        doc = self._decode(state_key, state[b"doc"])
        cfg = state.get(b"cfg")
        return {
            "layout": "split",
            "state": len(state[b"doc"]),
            "record": len(self._encode(doc.get("record"))),
            "history": int(state[b"bytes"]) - len(state[b"doc"]),
            "bot_config": self.client.strlen(self.keys.bot_config(cfg.decode())) if cfg else 0,
            "turns": turns,
            "total_turns": int(state[b"seq"]),
            "archived": int(state[b"archived"]),
            "ttl": ttl,
        }

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
            pipe = self.client.pipeline()
            self._replace(cid, session, initial_rev=1, client=pipe)
            pipe.delete(self.keys.legacy(cid))
            (_, rev, _), _ = pipe.execute()
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
        if "history" in changes:
            raise ValueError("history is not state: add turns with append_turns()")
        if changes.get("conversation_id", conversation_id) != conversation_id:
            raise ValueError("conversation_id cannot be changed")
        with traced("robot-v2.update-state"):
            state_key = self.keys.state(conversation_id)
            doc, rev = self.client.hmget(state_key, "doc", "rev")
            if doc is None:
                if not self._migrate_legacy(conversation_id):
                    raise SessionNotFound(conversation_id)
                doc, rev = self.client.hmget(state_key, "doc", "rev")
            if int(rev) != expected_rev:
                raise StaleRevision(conversation_id, expected_rev, int(rev))
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

    # --- internals --------------------------------------------------------------------

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

    def _replace(self, cid, session, *, initial_rev, client):
        """Queue, on a pipeline, the write of a whole conversation."""
        state = {k: v for k, v in session.items() if k not in SPLIT_KEYS | META_KEYS}
        args = [
            self._encode(state),
            *self._encode_bot_config(session.get("bot_config")),
            *self._encode_turns(session.get("history") or []),
        ]
        self._run_write(cid, "replace", initial_rev, args, client=client)

    def _run_write(self, cid, mode, rev, args, client=None):
        keys = [
            self.keys.state(cid),
            self.keys.turns(cid),
            self.keys.index_bytes,
            self.keys.index_seen,
        ]
        argv = [cid, time.time(), self.ttl, mode, rev, args[0], args[1], args[2]]
        argv += [self.keys.bot_config_prefix, *args[3:]]
        return self._write(keys=keys, args=argv, client=client)

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
                    raw = pipe.get(legacy_key)
                    if raw is None:
                        return False
                    session = self._decode_legacy(cid, raw)
                    pipe.multi()
                    # Revision 0 is what `load` reported for the legacy blob.
                    self._replace(cid, session, initial_rev=0, client=pipe)
                    pipe.delete(legacy_key)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

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
        session = self._decode(self.keys.legacy(cid), raw)
        session.setdefault("conversation_id", cid)
        return session

    def _fetch_bot_config(self, digest):
        key = self.keys.bot_config(digest)
        raw = self.client.get(key)
        if raw is None:
            raise CorruptSession(key, "the shared bot_config is missing")
        return self._decode(key, raw)


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
