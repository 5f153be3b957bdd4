"""The store's sans-IO core: what each call asks of Redis, and what the replies mean.

Each operation is a generator. It yields a Batch (commands sent in one round trip, replies
returned in order, errors as values) or an ArchiveRead, is sent what it asked for, and returns
the call's result. The sync and the async store drive the same generators: the logic exists
once, only the I/O differs. Nothing here does I/O or needs Django's settings.
"""

import logging
import operator
import secrets
import threading
from typing import NamedTuple

from convstore import indexing, kept_turns, legacy
from convstore import keys as fields
from convstore.codec import bot_config_digest, split_turn_item, turn_item
from convstore.exceptions import (
    CodecError,
    CorruptSession,
    SessionNotFound,
    StaleRevision,
)
from convstore.protocol import (
    EXISTS,
    NOT_FOUND,
    ONE_DOC,
    STALE,
    ArchiveRead,
    Command,
    Script,
    ask,
    check_rev,
    check_window,
    int_field,
    raise_for,
    text_field,
)
from convstore.tracing import traced

log = logging.getLogger(__name__)

# Keys of a session that are not state, and keys `load` adds for the caller.
SPLIT_KEYS = frozenset({"history", "bot_config"})
META_KEYS = frozenset({"_rev", "_turns"})


class Shape(NamedTuple):
    """What this process last saw of a conversation: its rev, next seq, field sizes and
    bot_config digest."""

    rev: int | None
    seq: int
    sizes: dict
    digest: str | None


class StoreCore:
    """Encoding, decoding and the rules of each call, shared by the sync and async stores."""

    def __init__(self, codec, *, keys, ttl=0, legacy_reads=True, cache_size=256):
        self.codec = codec
        self.keys = keys
        self.ttl = ttl
        self.legacy_reads = legacy_reads
        self.cache_size = cache_size
        # Both caches only ever hold what Redis held: a bot_config by its digest never changes,
        # and a shape only predicts an index change that the reply then confirms or corrects.
        self._bot_configs = {}
        self._shapes = {}
        # One store serves many threads: the caches' bounded inserts take turns.
        self._lock = threading.Lock()
        self.drift = 0
        """Index (or bot_config) commands that failed after their write happened."""

    # --- reading ---------------------------------------------------------------------------

    def load(self, cid, window):
        fields.check_cid(cid)
        window = check_window(window)
        with traced("robot-v2.load-conversation") as phase:
            phase("redis")
            state_key, turns_key = self.keys.state(cid), self.keys.turns(cid)
            batch = [Command("hgetall", (state_key,), state_key)]
            if window != 0:
                start = -window if window else 0
                batch.append(Command("lrange", (turns_key, start, -1), turns_key))
            state, *items = yield from ask(batch)
            if not state:
                return (yield from legacy.load_legacy(self, cid, window, phase))
            phase("decode")
            session, shape = self.decode_state(state_key, state)
            history = [self.decode_turn(turns_key, item) for item in items[0]] if items else []
            digest = state.get(fields.CFG.encode())
            bot_config = None if digest is None else self._bot_configs.get(digest)
            if digest is not None and bot_config is None:
                bot_config = yield from self.fetch_bot_config(digest)
            archived = state.get(fields.ARCHIVED.encode())
            if archived not in (None, b"0") and self._reaches_archive(history, shape.seq, window):
                phase("archive")
                incarnation = text_field(state_key, fields.INC, state.get(fields.INC.encode()))
                history = yield from self._with_archive(cid, incarnation, history, shape, window)
            phase("assemble")
            self._remember(cid, shape)
            if bot_config is not None:
                session["bot_config"] = bot_config
            session["history"] = history
            session["_rev"] = shape.rev
            session["_turns"] = shape.seq
            return session

    def decode_state(self, key, state):
        """(session without history, Shape) of a state hash as HGETALL returned it."""
        rev = int_field(key, fields.REV, state.get(fields.REV.encode()))
        seq = int_field(key, fields.SEQ, state.get(fields.SEQ.encode()))
        prefix = fields.STATE_PREFIX.encode()
        sizes = {name: len(raw) for name, raw in state.items() if name.startswith(prefix)}
        digest = state.get(fields.CFG.encode())
        digest = digest and text_field(key, fields.CFG, digest)
        doc = state.get(fields.DOC.encode())
        if doc is not None:
            return self.decode_object(key, doc), Shape(rev, seq, {}, digest)
        try:
            names = {name: name[len(prefix) :].decode() for name in sizes}
        except UnicodeDecodeError as e:
            raise CorruptSession(key, f"a state field name is not UTF-8: {e.object!r}") from None
        session = {names[name]: self.decode_value(key, state[name]) for name in sizes}
        return session, Shape(rev, seq, sizes, digest)

    def decode_value(self, key, raw):
        try:
            return self.codec.decode(raw)
        except CodecError as e:
            raise CorruptSession(key, e) from e

    def decode_object(self, key, raw):
        value = self.decode_value(key, raw)
        if not isinstance(value, dict):
            raise CorruptSession(key, f"expected a JSON object, got {type(value).__name__}")
        return value

    def decode_turn(self, key, item):
        try:
            seq, payload = split_turn_item(item)
        except CodecError as e:
            raise CorruptSession(key, e) from e
        turn = self.decode_object(key, payload)
        turn["seq"] = seq
        return turn

    def fetch_bot_config(self, digest):
        key = self.keys.bot_config(digest.decode())
        batch = [Command("get", (key,), key)]
        (raw,) = yield from ask(batch)
        if raw is None:
            raise CorruptSession(key, "the shared bot_config is missing")
        bot_config = self.decode_object(key, raw)
        _bounded_put(self._lock, self._bot_configs, digest, bot_config, self.cache_size)
        return bot_config

    def _reaches_archive(self, history, seq, window):
        """Whether the last ``window`` turns are not all among those read from Redis."""
        wanted = seq if window is None else min(window, seq)
        return len(history) < wanted or (bool(history) and history[0]["seq"] != seq - wanted)

    def _with_archive(self, cid, incarnation, history, shape, window):
        first = 0 if window is None else max(shape.seq - window, 0)
        in_redis = {turn["seq"] for turn in history}
        archived = yield ArchiveRead(cid, incarnation, first)
        merged = [turn for turn in archived if turn["seq"] not in in_redis]
        merged += [turn for turn in history if turn["seq"] >= first]
        # Pinned turns stay at the head in Redis, so the two parts can interleave.
        merged.sort(key=operator.itemgetter("seq"))
        return merged

    def size_breakdown(self, cid):
        fields.check_cid(cid)
        keys = [self.keys.state(cid), self.keys.turns(cid)]
        batch = [Script("field_sizes", keys, [])]
        (sizes,) = yield from ask(batch)
        if not sizes:
            return (yield from legacy.legacy_breakdown(self, cid))
        turns, ttl = sizes[-2:]
        pairs = zip(sizes[:-2:2], sizes[1:-2:2], strict=True)
        parts = {name.decode(): size for name, size in pairs}
        meta = yield from self._meta(keys[0], parts)
        state = {
            name[len(fields.STATE_PREFIX) :]: size
            for name, size in parts.items()
            if name.startswith(fields.STATE_PREFIX)
        }
        state_bytes = sum(state.values()) + parts.get(fields.DOC, 0)
        return {
            "layout": "split",
            "state": state_bytes,
            "fields": state,
            "record": state.get("record", 0),
            "history": meta[fields.BYTES] - state_bytes,
            "bot_config": meta["bot_config"],
            "turns": turns,
            "total_turns": meta[fields.SEQ],
            "archived": meta[fields.ARCHIVED],
            "ttl": ttl,
        }

    def _meta(self, state_key, parts):
        names = (fields.BYTES, fields.SEQ, fields.ARCHIVED, fields.CFG)
        batch = [Command("hmget", (state_key, *names), state_key)]
        ((size, seq, archived, digest),) = yield from ask(batch)
        meta = {
            fields.BYTES: int_field(state_key, fields.BYTES, size),
            fields.SEQ: int_field(state_key, fields.SEQ, seq),
            fields.ARCHIVED: int_field(state_key, fields.ARCHIVED, archived or 0),
            "bot_config": 0,
        }
        if digest is not None:
            key = self.keys.bot_config(digest.decode())
            batch = [Command("strlen", (key,), key)]
            (meta["bot_config"],) = yield from ask(batch)
        return meta

    # --- writing ---------------------------------------------------------------------------

    def save(self, session):
        cid = fields.check_cid(session.get("conversation_id"))
        with traced("robot-v2.save-conversation"):
            state = {k: v for k, v in session.items() if k not in SPLIT_KEYS | META_KEYS}
            if "_rev" in session:
                # Turns outside the loaded window are never dropped, and those with a seq are
                # stored already (editing or removing one is refused): the others are new.
                new_turns = [t for t in session.get("history") or [] if "seq" not in t]
                yield from kept_turns.check_unchanged(self, cid, session)
                return (
                    yield from self._update(
                        cid, state, session.get("bot_config"), new_turns, session["_rev"], True
                    )
                )
            rev = yield from self.replace(cid, session, initial_rev=1)
            return rev

    def update_state(self, cid, changes, expected_rev):
        fields.check_cid(cid)
        check_rev(expected_rev)
        if "history" in changes:
            raise ValueError("history is not state: add turns with append_turns()")
        if changes.get("conversation_id", cid) != cid:
            raise ValueError("conversation_id cannot be changed")
        with traced("robot-v2.update-state") as phase:
            phase("encode")
            state = {k: v for k, v in changes.items() if k not in SPLIT_KEYS | META_KEYS}
            return (
                yield from self._update(
                    cid, state, changes.get("bot_config"), [], expected_rev, False, phase
                )
            )

    def append_turns(self, cid, turns):
        fields.check_cid(cid)
        turns = list(turns)
        if not turns:
            return []
        with traced("robot-v2.append-turns") as phase:
            phase("encode")
            payloads = self.encode_turns(turns)
            keys = [self.keys.state(cid), self.keys.turns(cid)]
            shape = self._shapes.get(cid)
            predicted = _items_size(shape.seq if shape else 0, payloads)
            phase("redis")
            script = Script("append", keys, [self.ttl, *payloads])
            reply = yield from indexing.write(
                self, cid, script, predicted, lambda reply: reply[2], digest=shape and shape.digest
            )
            if reply[0] == NOT_FOUND:
                if not (yield from legacy.migrate_blob(self, cid)):
                    raise SessionNotFound(cid)
                return (yield from self.append_turns(cid, turns))
            first = reply[1]
            known = shape or Shape(None, 0, {}, None)
            self._remember(cid, known._replace(seq=first + len(turns)))
        return list(range(first, first + len(turns)))

    def delete(self, cid):
        fields.check_cid(cid)
        self._shapes.pop(cid, None)
        keys = [self.keys.state(cid), self.keys.turns(cid), self.keys.legacy(cid)]
        batch = [
            Command("delete", tuple(keys)),
            Command("zrem", (self.keys.index_bytes, cid)),
            Command("zrem", (self.keys.index_seen, cid)),
        ]
        # The DEL's reply alone decides; the indexes follow it (drift when they fail).
        replies = yield batch
        (deleted,) = yield from raise_for(replies[:1], batch[:1])
        indexing.drifted(self, cid, zip(batch[1:], replies[1:], strict=True))
        return deleted > 0

    def _update(self, cid, state, bot_config, new_turns, expected_rev, whole, phase=None):
        digest, config_commands = self.bot_config_commands(bot_config)
        encoded = [(fields.state_field(k), self.codec.encode(v)) for k, v in state.items()]
        payloads = self.encode_turns(new_turns)
        keys = [self.keys.state(cid), self.keys.turns(cid)]
        args = [self.ttl, expected_rev, digest, int(whole), len(encoded)]
        args += [part for pair in encoded for part in pair] + payloads
        shape = self._shapes.get(cid)
        predicted = _state_delta(shape, expected_rev, encoded, whole)
        if predicted is not None:
            predicted += _items_size(shape.seq, payloads)
        if phase is not None:
            phase("redis")
        script = Script("update_state", keys, args)
        known_digest = digest or (shape and shape.digest)
        reply = yield from indexing.write(
            self, cid, script, predicted, lambda reply: reply[2], config_commands, known_digest
        )
        status = reply[0]
        if status == NOT_FOUND:
            if not (yield from legacy.migrate_blob(self, cid)):
                raise SessionNotFound(cid)
        elif status == ONE_DOC:
            yield from legacy.split_doc(self, cid)
        if status in (NOT_FOUND, ONE_DOC):
            return (
                yield from self._update(
                    cid, state, bot_config, new_turns, expected_rev, whole, phase
                )
            )
        if status == STALE:
            self._shapes.pop(cid, None)
            raise StaleRevision(cid, expected_rev, reply[1])
        _, rev, _, first = reply
        written = {name.encode(): len(value) for name, value in encoded}
        if whole or shape is not None:
            sizes = written if whole else {**shape.sizes, **written}
            self._remember(cid, Shape(rev, first + len(payloads), sizes, known_digest or None))
        return rev

    def replace_many(self, sessions):
        """Create or replace whole conversations in one round trip (seeding: no legacy blob)."""
        batch, scripts = [], []
        for session in sessions:
            cid = fields.check_cid(session.get("conversation_id"))
            script, config_commands, _ = self._replace_script(cid, session, initial_rev=1)
            batch += [*config_commands, script, *indexing.index_commands(self, cid)]
            scripts.append((len(batch) - 2, cid))
        replies = yield from ask(batch)
        moves = {cid: replies[at][4] - replies[at][3] for at, cid in scripts}
        batch = [Command("zincrby", (self.keys.index_bytes, n, cid)) for cid, n in moves.items()]
        (yield from ask(batch))
        return len(scripts)

    def _replace_script(self, cid, session, *, initial_rev, create_only=False):
        state = {k: v for k, v in session.items() if k not in SPLIT_KEYS | META_KEYS}
        digest, config_commands = self.bot_config_commands(session.get("bot_config"))
        encoded = [(fields.state_field(k), self.codec.encode(v)) for k, v in state.items()]
        keys = [self.keys.state(cid), self.keys.turns(cid)]
        # The incarnation a creation starts (a replace keeps the one it has).
        incarnation = secrets.token_hex(8)
        args = [self.ttl, initial_rev, digest, int(create_only), incarnation, len(encoded)]
        args += [part for pair in encoded for part in pair]
        payloads = self.encode_turns(session.get("history") or [])
        sizes = {name.encode(): len(value) for name, value in encoded}
        shape = Shape(None, len(payloads), sizes, digest or None)
        return Script("replace", keys, [*args, *payloads]), config_commands, shape

    def replace(self, cid, session, *, initial_rev, create_only=False):
        script, config_commands, shape = self._replace_script(
            cid, session, initial_rev=initial_rev, create_only=create_only
        )
        reply = yield from indexing.write(
            self, cid, script, None, lambda reply: reply[4] - reply[3], config_commands
        )
        if reply[0] == EXISTS:
            return None
        rev, first, created = reply[1], reply[2], reply[5]
        self._remember(cid, shape._replace(rev=rev, seq=first + shape.seq))
        if created and self.legacy_reads:
            legacy_key = self.keys.legacy(cid)
            yield from indexing.follow_up(self, cid, [Command("delete", (legacy_key,), legacy_key)])
        return rev

    def bot_config_commands(self, bot_config):
        """(digest or '', the commands that store the bot_config once) for a write."""
        if bot_config is None:
            return "", []
        if not isinstance(bot_config, dict):  # a load could never read anything else back
            raise TypeError(f"bot_config must be a JSON object (dict), got {type(bot_config)}")
        digest = bot_config_digest(bot_config)
        key = self.keys.bot_config(digest)
        command = Command("set", (key, self.codec.encode(bot_config), self.ttl or None), key)
        return digest, [command]

    def encode_turns(self, turns):
        for turn in turns:
            if not isinstance(turn, dict):
                raise TypeError(f"a turn must be a dict, got {type(turn).__qualname__}")
        return [self.codec.encode({k: v for k, v in t.items() if k != "seq"}) for t in turns]

    def _remember(self, cid, shape):
        _bounded_put(self._lock, self._shapes, cid, shape, self.cache_size * 16)


def _bounded_put(lock, cache, key, value, size):
    """``cache[key] = value``, dropping the oldest entry when ``cache`` holds ``size``."""
    with lock:
        if key not in cache and len(cache) >= size:
            cache.pop(next(iter(cache)))
        cache[key] = value


def _items_size(seq, payloads):
    """Bytes of ``payloads`` stored as turns from ``seq`` on (see codec.turn_item)."""
    return sum(len(turn_item(seq + i, payload)) for i, payload in enumerate(payloads))


def _state_delta(shape, expected_rev, encoded, whole):
    """How the state's bytes change, from the sizes this process last saw; None if unknown."""
    if shape is None or shape.rev != expected_rev:
        return None
    new = {name.encode(): len(value) for name, value in encoded}
    old = shape.sizes if whole else {name: shape.sizes.get(name, 0) for name in new}
    return sum(new.values()) - sum(old.values())
