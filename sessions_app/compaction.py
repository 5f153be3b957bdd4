"""What compaction works with: the policy that says what "oversized" means, and the results
and report of a run, as the command, the task and the admin show them."""

from dataclasses import asdict, dataclass, field
from enum import StrEnum

from django.conf import settings

from convstore.exceptions import CorruptSession


@dataclass(frozen=True, kw_only=True)
class CompactionPolicy:
    """What "oversized" means and what compaction keeps; defaults in ``ROBOTPERF_COMPACTION``."""

    max_bytes: int
    """A session with more bytes than this in Redis is oversized."""
    max_turns: int
    """A session with more turns than this in Redis is oversized."""
    keep_turns: int
    """Compaction keeps the last this many turns in Redis and archives the others."""
    pinned: int = 0
    """The first this many turns (e.g. the system turn) stay in Redis too."""
    idle_archive_after: int = 0
    """Seconds without a write after which a whole session moves to the database; 0 never."""
    batch_size: int = 500
    """Sessions per index scan step, and turns per archive step."""

    def __post_init__(self):
        for name in ("max_bytes", "max_turns", "keep_turns", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("pinned", "idle_archive_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.keep_turns > self.max_turns:
            raise ValueError(
                f"keep_turns ({self.keep_turns}) must not be larger than max_turns "
                f"({self.max_turns})"
            )

    @classmethod
    def from_settings(cls, **overrides):
        """The policy in settings, with the ``overrides`` that are not None."""
        config = settings.ROBOTPERF_COMPACTION
        values = {
            "max_bytes": config["MAX_BYTES"],
            "max_turns": config["MAX_TURNS"],
            "keep_turns": config["KEEP_TURNS"],
            "pinned": config["PINNED"],
            "idle_archive_after": config["IDLE_ARCHIVE_AFTER"],
            "batch_size": config["BATCH_SIZE"],
        }
        values.update((name, value) for name, value in overrides.items() if value is not None)
        return cls(**values)

    def is_oversized(self, size):
        return size.bytes > self.max_bytes or size.turns > self.max_turns

    def is_idle(self, size, now):
        # A session missing from the seen index has no known last write: never idle.
        if not self.idle_archive_after or size.seen is None:
            return False
        return size.seen < now - self.idle_archive_after


@dataclass(frozen=True, kw_only=True)
class TrimResult:
    conversation_id: str
    turns_archived: int
    bytes_freed: int


class Action(StrEnum):
    """What compaction did to one session (or, in a dry run, would do)."""

    UNCHANGED = "unchanged"
    TRIMMED = "trimmed"
    REENCODED = "re-encoded"
    TRIMMED_REENCODED = "trimmed, re-encoded"
    ARCHIVED = "archived"


@dataclass(frozen=True, kw_only=True)
class CompactResult:
    conversation_id: str
    action: Action
    migrated: bool = False
    """Whether a legacy blob was moved to the split layout first."""
    bytes_before: int = 0
    bytes_after: int = 0
    turns_archived: int = 0


@dataclass(kw_only=True)
class CompactReport:
    dry_run: bool = False
    scanned: int = 0
    oversized: int = 0
    idle: int = 0
    migrated: int = 0
    migrated_bytes: int = 0
    """Bytes of the legacy blobs moved (or, in a dry run, to move) to the split layout."""
    docs_split: int = 0
    """First-release states (one doc) stored (or to store) as one field per key."""
    legacy_left: int | None = None
    """Legacy blobs still in Redis after a migration; at 0, STORE_LEGACY_READS can go off."""
    compacted: int = 0
    archived_sessions: int = 0
    turns_archived: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    pruned: int = 0
    """Index entries of sessions that are gone (expired or deleted by other code)."""
    indexes: dict | None = None
    """What ``rebuild_indexes`` did, when it was asked for."""
    skipped: list[dict] = field(default_factory=list)
    """{conversation_id, reason}: corrupt (with its key), busy, or written meanwhile."""
    missing: list[str] = field(default_factory=list)
    """Named conversations that do not exist."""
    bad_entries: list[dict] = field(default_factory=list)
    """{entry, key, reason}: index entries that name no session or hold no size or time, and
    indexes of another type; reported, and left for an operator to inspect and remove."""
    failed: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, result):
        self.bytes_before += result.bytes_before
        self.bytes_after += result.bytes_after
        self.turns_archived += result.turns_archived
        if result.action is Action.ARCHIVED:
            self.archived_sessions += 1
        elif result.action is not Action.UNCHANGED:
            self.compacted += 1

    def skip(self, conversation_id, error):
        entry = {"conversation_id": conversation_id, "reason": str(error)}
        if isinstance(error, CorruptSession):
            entry["key"] = error.key
        # A trim stopped by a corrupt turn has moved the batches before it: count them.
        self.turns_archived += getattr(error, "turns_archived", 0)
        self.skipped.append(entry)

    def bad_entry(self, entry, error):
        self.bad_entries.append({"entry": entry, "key": error.key, "reason": str(error)})

    def as_dict(self):
        return asdict(self)
