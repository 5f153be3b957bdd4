"""The Redis key layout of the conversation store: the only place that spells a key or a field.

A conversation id sits in ``{}``, a Redis Cluster hash tag, so one conversation's keys share a
slot; the indexes and the shared bot_configs are keys of their own, written beside its scripts.
The keys shared by every conversation (the indexes, the admin's census and scratch keys) carry
one hash tag of their own, the prefix (``rp:{rp}:idx:bytes``), so that the commands that read
several of them at once (ZINTERSTORE, MGET, a MULTI) stay in one slot of a cluster.
"""

from dataclasses import dataclass

LAYOUT_VERSION = 4
"""The key layout this library writes: 1 the first release's one ``doc`` field, 2 one field per
state key, 3 with incarnations, 4 with split keys (one field per sub-key, SPLIT_PREFIX). Each
state hash it creates, or splits a key of, carries it (LAYOUT); hashes without it are of layout
2 (or 1, when they hold a DOC). A reader of layout 3 cannot read a split key: every reader must
run layout 4 before a writer splits one."""

# Fields of a conversation's state hash, besides one per top-level key of its state.
REV = "rev"
"""Bumped by every state write; a write names the rev it read."""
SEQ = "seq"
"""The seq the next appended turn gets."""
CFG = "cfg"
"""The digest of its shared bot_config."""
ARCHIVED = "archived"
"""How many of its turns were moved to the archive."""
BYTES = "bytes"
"""Bytes of its state fields and turn items in Redis."""
LAYOUT = "v"
"""The key layout version the conversation was created in (LAYOUT_VERSION)."""
INC = "inc"
"""Its incarnation: a random id given when the conversation is created in Redis. An id that
left Redis (deleted, expired, lost) and is saved again is a new incarnation, whose turns are
numbered from 0 again; archive rows carry it, so the two are never mixed. Sessions created
before it existed have none: their incarnation is the empty string."""
DOC = "doc"
"""The whole state as one value: how the first release stored it, read and split on write."""
STATE_PREFIX = "s:"
SPLIT_PREFIX = "p:"
"""The fields of a split key's sub-keys: ``p:<characters in the key>:<key><sub-key>``, so that no
two (key, sub-key) pairs share a field, whatever characters they hold."""
SPLIT_MARKER = b""
"""The value of ``s:<key>`` when that key is stored split (a dict, one field per sub-key): no
codec value is empty, so a reader of an older layout fails on it rather than misreads it."""
# What the Lua scripts call these (the table ``F`` that scripts.py gives them).
LUA_FIELDS = {
    "rev": REV,
    "seq": SEQ,
    "cfg": CFG,
    "archived": ARCHIVED,
    "bytes": BYTES,
    "inc": INC,
    "layout": LAYOUT,
    "doc": DOC,
    "state_prefix": STATE_PREFIX,
    "split_prefix": SPLIT_PREFIX,
}


def state_field(name: str) -> str:
    """The state hash field of the top-level state key ``name``."""
    return STATE_PREFIX + name


def split_group(name: str) -> str:
    """The start of every sub-field of the split state key ``name``, and of no other field."""
    return f"{SPLIT_PREFIX}{len(name)}:{name}"


def split_field(name: str, sub: str) -> str:
    """The state hash field of the sub-key ``sub`` of the split state key ``name``."""
    return split_group(name) + sub


def parse_split_field(field: str) -> tuple[str, str]:
    """(key, sub-key) of a split field; ValueError when it is not one."""
    length, sep, rest = field[len(SPLIT_PREFIX) :].partition(":")
    if not field.startswith(SPLIT_PREFIX) or not sep or not length.isdigit():
        raise ValueError(f"not a split state field: {field!r}")
    if len(rest) < int(length):
        raise ValueError(f"not a split state field: {field!r}")
    return rest[: int(length)], rest[int(length) :]


def check_cid(conversation_id: object) -> str:
    """A conversation id: a non-empty str without braces (they would move its hash tag)."""
    if not isinstance(conversation_id, str) or not conversation_id:
        raise ValueError(f"conversation_id must be a non-empty string, got {conversation_id!r}")
    if "{" in conversation_id or "}" in conversation_id:
        raise ValueError(f"conversation_id must not contain braces: {conversation_id!r}")
    return conversation_id


@dataclass(frozen=True, slots=True)
class KeyLayout:
    prefix: str = "rp"
    legacy_format: str = "session:{cid}"

    def state(self, cid: str) -> str:
        """HASH: REV, SEQ, INC, CFG, ARCHIVED, BYTES, and one ``s:<key>`` field per state key."""
        return f"{self.prefix}:conv:{{{cid}}}:state"

    def turns(self, cid: str) -> str:
        """LIST: one ``<seq>|<codec bytes>`` item per turn, oldest first."""
        return f"{self.prefix}:conv:{{{cid}}}:turns"

    def bot_config(self, digest: str) -> str:
        """STRING: a bot_config stored once, addressed by the sha256 of its canonical JSON."""
        return f"{self.prefix}:botcfg:{digest}"

    def legacy(self, cid: str) -> str:
        """STRING: the whole conversation as one stdlib-json blob, as the robot wrote it."""
        return self.legacy_format.format(cid=cid)

    @property
    def shared(self) -> str:
        """The start of every key shared by all conversations: one hash tag, one slot."""
        return f"{self.prefix}:{{{self.prefix}}}"

    @property
    def index_bytes(self) -> str:
        """ZSET: conversation id -> bytes of its state and turns."""
        return f"{self.shared}:idx:bytes"

    @property
    def index_seen(self) -> str:
        """ZSET: conversation id -> unix time of its last write."""
        return f"{self.shared}:idx:seen"

    @property
    def state_pattern(self) -> str:
        """SCAN pattern that matches every conversation's state key."""
        return f"{self.prefix}:conv:*:state"

    @property
    def legacy_pattern(self) -> str:
        return self.legacy_format.format(cid="*")

    def cid_from_state(self, key: str) -> str:
        return key[len(f"{self.prefix}:conv:{{") : -len("}:state")]

    def cid_from_legacy(self, key: str) -> str:
        head, _, tail = self.legacy_format.partition("{cid}")
        return key[len(head) : len(key) - len(tail)]

    # --- what every process writes about its calls (slowlog.py, latency.py) ------------------

    @property
    def slow_log(self) -> str:
        """STREAM: one entry per store call slower than its process's threshold, capped."""
        return f"{self.prefix}:slowlog"

    def latency(self, minute: int) -> str:
        """HASH: ``<call>:<bucket>`` -> calls of that minute (unix time // 60) whose duration
        fell in that bucket (latency.py), summed over every process; expires after an hour."""
        return f"{self.prefix}:latency:{minute}"

    # --- the admin's own keys: a cached census of every session, scratch space ---------------

    def census(self, part: str) -> str:
        """The admin's census (see census.py): ``summary`` (STRING, JSON); ZSETs ``ids`` (every
        id, score 0: by id), ``turns`` (id -> turns in Redis), ``oversized`` (id -> bytes)."""
        return f"{self.shared}:admin:census:{part}"

    def census_bot(self, digest: str) -> str:
        """ZSET: conversation id -> bytes, of the sessions sharing the bot_config ``digest``."""
        return f"{self.shared}:admin:census:bot:{digest}"

    def scratch(self, token: str) -> str:
        """A short-lived key of one admin request (a list filter, a load profile's legacy blob)."""
        return f"{self.shared}:admin:scratch:{token}"
