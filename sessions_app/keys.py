"""The Redis key layout of the conversation store: the only place that spells a key.

A conversation id sits in ``{}``, a Redis Cluster hash tag, so one conversation's keys share a slot.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeyLayout:
    prefix: str = "rp"
    legacy_format: str = "session:{cid}"

    def state(self, cid):
        """HASH: doc, rev, seq, cfg, archived, bytes."""
        return f"{self.prefix}:conv:{{{cid}}}:state"

    def turns(self, cid):
        """LIST: one ``<seq>|<codec bytes>`` item per turn, oldest first."""
        return f"{self.prefix}:conv:{{{cid}}}:turns"

    def bot_config(self, digest):
        """STRING: a bot_config stored once, addressed by the sha256 of its canonical JSON."""
        return f"{self.prefix}:botcfg:{digest}"

    def legacy(self, cid):
        """STRING: the whole conversation as one stdlib-json blob, as the robot wrote it."""
        return self.legacy_format.format(cid=cid)

    @property
    def bot_config_prefix(self):
        return self.bot_config("")

    @property
    def index_bytes(self):
        """ZSET: conversation id -> bytes of its state and turns."""
        return f"{self.prefix}:idx:bytes"

    @property
    def index_seen(self):
        """ZSET: conversation id -> unix time of its last write."""
        return f"{self.prefix}:idx:seen"

    def lock(self, name):
        return f"{self.prefix}:lock:{name}"

    @property
    def state_pattern(self):
        """SCAN pattern that matches every conversation's state key."""
        return f"{self.prefix}:conv:*:state"

    @property
    def legacy_pattern(self):
        return self.legacy_format.format(cid="*")

    def cid_from_state(self, key):
        return key[len(f"{self.prefix}:conv:{{") : -len("}:state")]

    def cid_from_legacy(self, key):
        head, _, tail = self.legacy_format.partition("{cid}")
        return key[len(head) : len(key) - len(tail)]
