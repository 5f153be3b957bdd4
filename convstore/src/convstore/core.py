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
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, overload

from convstore import indexing, kept_turns, legacy
from convstore import keys as fields
from convstore.codec import Codec, bot_config_digest, split_turn_item, turn_item
from convstore.exceptions import (
    CodecError,
    CorruptSession,
    SessionNotFound,
    StaleRevision,
)
from convstore.keys import KeyLayout
from convstore.protocol import (
    EXISTS,
    NOT_FOUND,
    NOT_SPLIT,
    ONE_DOC,
    STALE,
    ArchiveRead,
    Batch,
    Command,
    Operation,
    Script,
    Session,
    Turn,
    ask,
    check_rev,
    check_window,
    raise_for,
    text_field,
)
from convstore.state_fields import (
    Merge,
    Shape,
    check_merge,
    check_split_keys,
    decode_state,
    encode_state,
    encode_sub_keys,
    merged,
    state_delta,
    state_of,
)
from convstore.tracing import traced

log = logging.getLogger(__name__)

_BYTES = fields.BYTES.encode()


class StoreCore:
    """Encoding, decoding and the rules of each call, shared by the sync and async stores."""

    def __init__(
        self,
        codec: Codec,
        *,
        keys: KeyLayout,
        ttl: int = 0,
        legacy_reads: bool = True,
        cache_size: int = 256,
        split_keys: Iterable[str] = (),
    ) -> None:
        self.codec = codec
        self.keys = keys
        self.ttl = ttl
        self.legacy_reads = legacy_reads
        self.split_keys = check_split_keys(split_keys)
        self.cache_size = cache_size
        # Both caches only ever hold what Redis held: a bot_config by its digest never changes,
        # and a shape only predicts an index change that the reply then confirms or corrects.
        self._bot_configs: dict[bytes, dict[str, Any]] = {}
        self._shapes: dict[str, Shape] = {}
        # One store serves many threads: the caches' bounded inserts take turns.
        self._lock = threading.Lock()
        self.drift = 0
        """Index (or bot_config) commands that failed after their write happened."""

    # --- reading ---------------------------------------------------------------------------

    def load(self, cid: str, window: int | None) -> Operation[Session | None]:
        fields.check_cid(cid)
        window = check_window(window)
        call = traced("robot-v2.load-conversation", cid, window)
        with call as phase:
            phase("redis")
            state_key, turns_key = self.keys.state(cid), self.keys.turns(cid)
            batch: Batch = [Command("hgetall", (state_key,), state_key)]
            if window != 0:
                start = -window if window else 0
                batch.append(Command("lrange", (turns_key, start, -1), turns_key))
            state, *items = yield from ask(batch)
            if not state:
                return (yield from legacy.load_legacy(self, cid, window, phase))
            phase("decode")
            call.size = state.get(_BYTES)
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

    def decode_state(self, key: str, state: dict[bytes, bytes]) -> tuple[Session, Shape]:
        """(session without history, Shape) of a state hash as HGETALL returned it."""
        return decode_state(self, key, state)

    def decode_value(self, key: str, raw: bytes) -> Any:
        try:
            return self.codec.decode(raw)
        except CodecError as e:
            raise CorruptSession(key, e) from e

    def decode_object(self, key: str, raw: bytes) -> dict[str, Any]:
        value = self.decode_value(key, raw)
        if not isinstance(value, dict):
            raise CorruptSession(key, f"expected a JSON object, got {type(value).__name__}")
        return value

    def decode_turn(self, key: str, item: bytes) -> Turn:
        try:
            seq, payload = split_turn_item(item)
        except CodecError as e:
            raise CorruptSession(key, e) from e
        turn = self.decode_object(key, payload)
        turn["seq"] = seq
        return turn

    def fetch_bot_config(self, digest: bytes) -> Operation[dict[str, Any]]:
        key = self.keys.bot_config(digest.decode())
        batch: Batch = [Command("get", (key,), key)]
        (raw,) = yield from ask(batch)
        if raw is None:
            raise CorruptSession(key, "the shared bot_config is missing")
        bot_config = self.decode_object(key, raw)
        _bounded_put(self._lock, self._bot_configs, digest, bot_config, self.cache_size)
        return bot_config

    def _reaches_archive(self, history: list[Turn], seq: int, window: int | None) -> bool:
        """Whether the last ``window`` turns are not all among those read from Redis."""
        wanted = seq if window is None else min(window, seq)
        return len(history) < wanted or (bool(history) and history[0]["seq"] != seq - wanted)

    def _with_archive(
        self, cid: str, incarnation: str, history: list[Turn], shape: Shape, window: int | None
    ) -> Operation[list[Turn]]:
        first = 0 if window is None else max(shape.seq - window, 0)
        in_redis = {turn["seq"] for turn in history}
        archived: Iterable[Turn] = yield ArchiveRead(cid, incarnation, first)
        merged = [turn for turn in archived if turn["seq"] not in in_redis]
        merged += [turn for turn in history if turn["seq"] >= first]
        # Pinned turns stay at the head in Redis, so the two parts can interleave.
        merged.sort(key=operator.itemgetter("seq"))
        return merged

    # --- writing ---------------------------------------------------------------------------

    def save(self, session: Session) -> Operation[int]:
        cid = fields.check_cid(session.get("conversation_id"))
        with traced("robot-v2.save-conversation", cid):
            state = state_of(session)
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

    def update_state(
        self,
        cid: str,
        changes: Mapping[str, Any],
        expected_rev: int,
        turns: Iterable[Turn] = (),
        merge: Merge | None = None,
    ) -> Operation[int]:
        fields.check_cid(cid)
        check_rev(expected_rev)
        if "history" in changes:
            raise ValueError("history is not state: add turns with append= or append_turns()")
        if changes.get("conversation_id", cid) != cid:
            raise ValueError("conversation_id cannot be changed")
        merge = check_merge(self, changes, merge or {})
        with traced("robot-v2.update-state", cid) as phase:
            phase("encode")
            state = state_of(changes)
            return (
                yield from self._update(
                    cid,
                    state,
                    changes.get("bot_config"),
                    list(turns),
                    expected_rev,
                    False,
                    phase,
                    merge,
                )
            )

    def append_turns(self, cid: str, turns: Iterable[Turn]) -> Operation[list[int]]:
        fields.check_cid(cid)
        turns = list(turns)
        if not turns:
            return []
        with traced("robot-v2.append-turns", cid) as phase:
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

    def delete(self, cid: str) -> Operation[bool]:
        fields.check_cid(cid)
        self.forget(cid)
        keys = [self.keys.state(cid), self.keys.turns(cid), self.keys.legacy(cid)]
        batch: Batch = [
            Command("delete", tuple(keys)),
            Command("zrem", (self.keys.index_bytes, cid)),
            Command("zrem", (self.keys.index_seen, cid)),
        ]
        # The DEL's reply alone decides; the indexes follow it (drift when they fail).
        replies = yield batch
        deleted: int
        (deleted,) = yield from raise_for(replies[:1], batch[:1])
        indexing.drifted(self, cid, zip(batch[1:], replies[1:], strict=True))
        return deleted > 0

    def _update(
        self,
        cid: str,
        state: dict[str, Any],
        bot_config: object,
        new_turns: list[Turn],
        expected_rev: int,
        whole: bool,
        phase: Callable[[str], None] | None = None,
        merge: Merge | None = None,
    ) -> Operation[int]:
        merge = merge or {}
        digest, config_commands = self.bot_config_commands(bot_config)
        encoded = encode_state(self, state)
        for name, sub_keys in merge.items():
            encoded.update(encode_sub_keys(self, name, sub_keys))
        # A key written whole drops its sub-key fields not written; a merge needs it split.
        groups = [] if whole else [fields.split_group(name) for name in state]
        markers = [fields.state_field(name) for name in merge]
        payloads = self.encode_turns(new_turns)
        keys = [self.keys.state(cid), self.keys.turns(cid)]
        args: list[Any] = [self.ttl, expected_rev, digest, int(whole)]
        args += [len(encoded), len(groups), len(markers)]
        args += [part for pair in encoded.items() for part in pair] + groups + markers + payloads
        shape = self._shapes.get(cid)
        dropped = tuple(group.encode() for group in groups)
        predicted = state_delta(shape, expected_rev, encoded, dropped, whole)
        if predicted is not None and shape is not None:
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
        elif status == NOT_SPLIT:
            # A merge into a key stored whole (or not at all): merged here, written split.
            name = list(merge)[reply[1]]
            value = yield from merged(self, cid, name, merge[name], expected_rev)
            state = {**state, name: value}
            merge = {k: v for k, v in merge.items() if k != name}
        if status in (NOT_FOUND, ONE_DOC, NOT_SPLIT):
            return (
                yield from self._update(
                    cid, state, bot_config, new_turns, expected_rev, whole, phase, merge
                )
            )
        if status == STALE:
            self.forget(cid)
            raise StaleRevision(cid, expected_rev, reply[1])
        rev: int
        first: int
        _, rev, _, first = reply
        written = {name.encode(): len(value) for name, value in encoded.items()}
        if whole or shape is not None:
            sizes = written
            if not whole and shape is not None:
                kept = {n: size for n, size in shape.sizes.items() if not n.startswith(dropped)}
                sizes = {**kept, **written}
            self._remember(cid, Shape(rev, first + len(payloads), sizes, known_digest or None))
        return rev

    def replace_many(self, sessions: Iterable[Session]) -> Operation[int]:
        """Create or replace whole conversations in one round trip (seeding: no legacy blob)."""
        batch: Batch = []
        scripts: list[tuple[int, str]] = []
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

    def _replace_script(
        self, cid: str, session: Session, *, initial_rev: int, create_only: bool = False
    ) -> tuple[Script, list[Command], Shape]:
        state = state_of(session)
        digest, config_commands = self.bot_config_commands(session.get("bot_config"))
        encoded = encode_state(self, state)
        keys = [self.keys.state(cid), self.keys.turns(cid)]
        # The incarnation a creation starts (a replace keeps the one it has).
        incarnation = secrets.token_hex(8)
        args = [self.ttl, initial_rev, digest, int(create_only), incarnation, len(encoded)]
        args += [part for pair in encoded.items() for part in pair]
        payloads = self.encode_turns(session.get("history") or [])
        sizes = {name.encode(): len(value) for name, value in encoded.items()}
        shape = Shape(None, len(payloads), sizes, digest or None)
        return Script("replace", keys, [*args, *payloads]), config_commands, shape

    @overload
    def replace(
        self, cid: str, session: Session, *, initial_rev: int, create_only: Literal[False] = False
    ) -> Operation[int]: ...

    @overload
    def replace(
        self, cid: str, session: Session, *, initial_rev: int, create_only: bool = False
    ) -> Operation[int | None]: ...

    def replace(
        self, cid: str, session: Session, *, initial_rev: int, create_only: bool = False
    ) -> Operation[int | None]:
        """Create or replace the whole conversation; its rev, or None when ``create_only``
        and it exists."""
        script, config_commands, shape = self._replace_script(
            cid, session, initial_rev=initial_rev, create_only=create_only
        )
        reply = yield from indexing.write(
            self, cid, script, None, lambda reply: reply[4] - reply[3], config_commands
        )
        if reply[0] == EXISTS:
            return None
        rev: int
        rev, first, created = reply[1], reply[2], reply[5]
        self._remember(cid, shape._replace(rev=rev, seq=first + shape.seq))
        if created and self.legacy_reads:
            legacy_key = self.keys.legacy(cid)
            yield from indexing.follow_up(self, cid, [Command("delete", (legacy_key,), legacy_key)])
        return rev

    def bot_config_commands(self, bot_config: object) -> tuple[str, list[Command]]:
        """(digest or '', the commands that store the bot_config once) for a write."""
        if bot_config is None:
            return "", []
        if not isinstance(bot_config, dict):  # a load could never read anything else back
            raise TypeError(f"bot_config must be a JSON object (dict), got {type(bot_config)}")
        digest = bot_config_digest(bot_config)
        key = self.keys.bot_config(digest)
        command = Command("set", (key, self.codec.encode(bot_config), self.ttl or None), key)
        return digest, [command]

    def encode_turns(self, turns: list[Turn]) -> list[bytes]:
        for turn in turns:
            if not isinstance(turn, dict):
                raise TypeError(f"a turn must be a dict, got {type(turn).__qualname__}")
        return [self.codec.encode({k: v for k, v in t.items() if k != "seq"}) for t in turns]

    def _remember(self, cid: str, shape: Shape) -> None:
        _bounded_put(self._lock, self._shapes, cid, shape, self.cache_size * 16)

    def forget(self, cid: str) -> None:
        """Drop what this process saw of ``cid``: its next write predicts nothing."""
        self._shapes.pop(cid, None)


def _bounded_put[K, V](
    lock: threading.Lock, cache: dict[K, V], key: K, value: V, size: int
) -> None:
    """``cache[key] = value``, dropping the oldest entry when ``cache`` holds ``size``."""
    with lock:
        if key not in cache and len(cache) >= size:
            cache.pop(next(iter(cache)))
        cache[key] = value


def _items_size(seq: int, payloads: list[bytes]) -> int:
    """Bytes of ``payloads`` stored as turns from ``seq`` on (see codec.turn_item)."""
    return sum(len(turn_item(seq + i, payload)) for i, payload in enumerate(payloads))
