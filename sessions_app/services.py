"""Business rules of the conversation store: seeding, trimming, compaction.

Admin views, commands and tasks call these; each function is one operation on the store.
"""

import itertools
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from operator import attrgetter

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from robotperf.locks import LockHeld, exclusive
from sessions_app import census, demo
from sessions_app.models import ArchivedSession, ArchivedTurn
from sessions_app.selectors import archived_turns
from sessions_app.store import (
    WRITTEN,
    CorruptSession,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
    get_store,
)


@dataclass(frozen=True, slots=True)
class SeedResult:
    conversation_ids: list[str]
    skipped: bool = False


def seed_sessions(
    *,
    count: int,
    steps: int,
    turns: int,
    legacy: bool = False,
    if_empty: bool = False,
    prefix: str = "demo-",
    start: int = 0,
    seed: int = demo.DEFAULT_SEED,
) -> SeedResult:
    """Write ``count`` demo sessions numbered from ``start``, through the store or as legacy blobs.

    Legacy blobs are stdlib JSON at the legacy key, as the robot wrote them; the store reads
    them transparently. With ``if_empty``, nothing is written when the store holds any session.
    """
    if min(count, turns, start) < 0 or steps < 1:
        raise ValueError(
            f"count, turns and start must be >= 0 and steps >= 1 "
            f"(got count={count}, steps={steps}, turns={turns}, start={start})"
        )
    if not prefix or "{" in prefix or "}" in prefix:
        raise ValueError(f"prefix must be non-empty and without braces, got {prefix!r}")
    store = get_store()
    indexes = range(start, start + count)
    if if_empty and not store.is_empty():
        return SeedResult([], skipped=True)
    sessions = (
        demo.make_session(i, steps=steps, turns=turns, seed=seed, prefix=prefix) for i in indexes
    )
    if legacy:
        store.save_legacy(sessions)
    else:
        for session in sessions:
            store.save(session)
    return SeedResult([f"{prefix}{i:06d}" for i in indexes])


# The demo `make run` starts with: everyday sessions, oversized ones for the scheduled
# compaction to trim, and legacy blobs for it to migrate.
DEMO_BATCHES = (
    {"count": 200, "steps": 60, "turns": 200, "prefix": "demo-"},
    {"count": 20, "steps": 120, "turns": 800, "prefix": "demo-long-"},
    {"count": 20, "steps": 60, "turns": 100, "prefix": "demo-legacy-", "legacy": True},
)


def seed_demo() -> list[SeedResult]:
    """Write the demo sessions into an empty store; nothing when it holds any session."""
    if not get_store().is_empty():
        return []
    return [seed_sessions(**batch) for batch in DEMO_BATCHES]


# --- trim, compaction, archive ---------------------------------------------------------


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

    def as_dict(self):
        return asdict(self)


class SessionBusy(StoreError):
    def __init__(self, conversation_id, reason="was written while it was archived"):
        super().__init__(f"conversation {conversation_id!r} {reason}")
        self.conversation_id = conversation_id


COMPACTION_LOCK = "compact-oversized-sessions"


@contextmanager
def session_guard(conversation_id):
    """Hold the conversation's own lock, so its trims, compactions and restores never overlap.

    Waits up to SESSION_LOCK_WAIT seconds for another operation to end, then SessionBusy.
    """
    config = settings.ROBOTPERF_COMPACTION
    try:
        with exclusive(
            f"conv:{conversation_id}",
            timeout=config["SESSION_LOCK_TIMEOUT"],
            wait=config["SESSION_LOCK_WAIT"],
        ):
            yield
    except LockHeld:
        raise SessionBusy(conversation_id, "is busy: another operation on it is running") from None


def trim_history(
    conversation_id: str, *, keep: int, pinned: int = 0, batch_size: int = 500
) -> TrimResult:
    """Move the turns before the last ``keep`` (after the first ``pinned``) to the archive.

    Each batch is copied to the database first, then exactly the copied turns are removed
    from Redis, checked atomically there: a turn appended meanwhile stays, a concurrent trim
    never removes a turn twice, and a run that stops between the two steps is repaired by the
    next one (the copy ignores rows already archived).
    """
    if keep < 0 or pinned < 0 or batch_size < 1:
        raise ValueError(f"keep and pinned must be >= 0, batch_size >= 1 (got {keep}, {pinned})")
    with session_guard(conversation_id):
        return _trim(get_store(), conversation_id, keep=keep, pinned=pinned, batch=batch_size)


def _trim(store, conversation_id, *, keep, pinned, batch):
    # Turns appended after the trim started are left to the next one: a busy session would
    # otherwise keep it running for as long as the appends go on.
    below = store.next_seq(conversation_id) - keep
    archived = freed = 0
    try:
        while turns := store.trim_candidates(
            conversation_id, keep=keep, pinned=pinned, batch=batch, below=below
        ):
            archive_turns(conversation_id=conversation_id, turns=turns)
            removed, size = store.remove_archived(
                conversation_id, [turn["seq"] for turn in turns], pinned=pinned
            )
            archived += removed
            freed += size
            if len(turns) < batch:  # that was the last batch: spare a round trip
                break
    except CorruptSession as e:
        e.turns_archived = archived
        raise
    return TrimResult(conversation_id=conversation_id, turns_archived=archived, bytes_freed=freed)


def archive_turns(*, conversation_id: str, turns: list[dict]) -> None:
    """Copy turns (each with its seq) to the archive; rows already there are left as they are."""
    rows = [
        (
            turn["seq"],
            str(turn.get("role", ""))[:32],
            {k: v for k, v in turn.items() if k != "seq"},
            _turn_time(turn),
        )
        for turn in turns
    ]
    # Durable: the rows must be committed before the turns leave Redis.
    with transaction.atomic(durable=True):
        ArchivedTurn.objects.add_missing(conversation_id, rows)


def _turn_time(turn):
    value = next((turn[k] for k in ("created_at", "time", "timestamp") if turn.get(k)), None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    try:
        moment = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        return None
    if moment is not None and timezone.is_naive(moment):
        return timezone.make_aware(moment, UTC)
    return moment


def compact_session(conversation_id: str, policy: CompactionPolicy) -> CompactResult:
    """Migrate a legacy blob, archive the session if idle, else trim if oversized; re-encode.

    Raises CorruptSession (and leaves the session as it is) when a value cannot be decoded,
    SessionBusy when another operation on it is running.
    """
    store = get_store()
    with session_guard(conversation_id):
        migrated = store.migrate_legacy(conversation_id)
        (size,) = store.session_sizes([conversation_id])
        if size.corrupt:
            raise size.corrupt
        if not size.exists:
            raise SessionNotFound(conversation_id)
        return replace(_compact(store, policy, size), migrated=bool(migrated))


def _compact(store, policy, size):
    """Compact a split-layout session whose size was just read (from the index, in a scan)."""
    conversation_id = size.conversation_id
    if policy.is_idle(size, time.time()):
        return _archive_idle(store, conversation_id)
    # Nothing moves before the state is known to decode: a session that cannot be re-encoded
    # is reported as corrupt with all of it still in Redis.
    store.check_state(conversation_id)
    trimmed = TrimResult(conversation_id=conversation_id, turns_archived=0, bytes_freed=0)
    if policy.is_oversized(size):
        trimmed = _trim(
            store,
            conversation_id,
            keep=policy.keep_turns,
            pinned=policy.pinned,
            batch=policy.batch_size,
        )
    saved = store.reencode(conversation_id)
    actions = {
        (False, False): Action.UNCHANGED,
        (True, False): Action.TRIMMED,
        (False, True): Action.REENCODED,
        (True, True): Action.TRIMMED_REENCODED,
    }
    return CompactResult(
        conversation_id=conversation_id,
        action=actions[bool(trimmed.turns_archived), bool(saved)],
        bytes_before=size.bytes,
        # What this compaction changed; turns appended meanwhile are not its doing.
        bytes_after=size.bytes - trimmed.bytes_freed - saved,
        turns_archived=trimmed.turns_archived,
    )


def _archive_idle(store, conversation_id):
    """Move a whole idle session to the database; its Redis copy goes only once the row is in.

    A run deletes only a row that it created itself: another run may have archived (and
    dropped) the session meanwhile, and its row is then the only copy of the state.
    """
    snapshot = store.snapshot(conversation_id)
    state = {k: v for k, v in snapshot.session.items() if k != "history"}
    history = snapshot.session["history"]
    seen = snapshot.seen and datetime.fromtimestamp(snapshot.seen, tz=UTC)
    archive_turns(conversation_id=conversation_id, turns=history)
    with transaction.atomic(durable=True):
        row, created = ArchivedSession.objects.update_or_create(
            conversation_id=conversation_id,
            defaults={
                "bot_id": str(state.get("bot_id", ""))[:255],
                "state": state,
                "rev": snapshot.rev,
                "next_seq": snapshot.next_seq,
                "bytes": snapshot.bytes,
                "last_seen_at": seen,
            },
        )
    dropped = store.drop_archived(conversation_id, rev=snapshot.rev, seq=snapshot.next_seq)
    if dropped == WRITTEN:
        # Written meanwhile, so not idle: it stays in Redis; its copied turns are harmless.
        if created:
            ArchivedSession.objects.filter(
                pk=row.pk, rev=snapshot.rev, next_seq=snapshot.next_seq
            ).delete()
        raise SessionBusy(conversation_id)
    return CompactResult(
        conversation_id=conversation_id,
        action=Action.ARCHIVED,
        bytes_before=snapshot.bytes,
        turns_archived=len(history),
    )


def restore_session(conversation_id: str, *, keep_turns: int | None = None) -> int:
    """Bring a session archived whole back into Redis with its last ``keep_turns`` turns.

    The other turns stay in the archive, where `load(window=None)` finds them. Returns the
    number of turns put back in Redis.
    """
    keep = settings.ROBOTPERF_COMPACTION["KEEP_TURNS"] if keep_turns is None else keep_turns
    if keep < 0:
        raise ValueError(f"keep_turns must not be negative, got {keep}")
    with session_guard(conversation_id):
        archived = ArchivedSession.objects.filter(conversation_id=conversation_id).first()
        if archived is None:
            raise SessionNotFound(conversation_id)
        first = max(archived.next_seq - keep, 0)
        turns = archived_turns(conversation_id, from_seq=first) if keep else []
        session = {**archived.state, "conversation_id": conversation_id}
        get_store().restore(session, rev=archived.rev, next_seq=archived.next_seq, turns=turns)
        archived.delete()
    return len(turns)


def rebuild_indexes(*, batch_size: int = 500) -> dict:
    """Rebuild the bytes and seen indexes from the keys in Redis (SCAN), pruning stale entries."""
    return get_store().rebuild_indexes(batch=batch_size)


def compact_oversized(
    policy: CompactionPolicy,
    *,
    limit: int | None = None,
    progress: Callable[[int], object] | None = None,
    conversation_ids: list[str] | None = None,
    migrate_legacy: bool = False,
    rebuild: bool = False,
) -> CompactReport:
    """Compact every oversized (or idle) session, found through the indexes; report the run.

    ``conversation_ids`` looks at those sessions only; ``limit`` stops after that many were
    compacted; ``migrate_legacy`` first moves every legacy blob (found by SCAN) to the split
    layout; ``rebuild`` first rebuilds the indexes. ``progress`` is called with the number of
    sessions scanned at each step. Holds the compaction lock for the whole run (LockHeld when
    another run has it), renewing it at each step.
    """
    timeout = settings.ROBOTPERF_COMPACTION["LOCK_TIMEOUT"]
    with exclusive(COMPACTION_LOCK, timeout=timeout) as lock:
        report = CompactReport()
        if rebuild:
            report.indexes = rebuild_indexes(batch_size=policy.batch_size)

        def step(sizes):
            _compact_batch(get_store(), policy, sizes, report, limit=limit)
            lock.reacquire()

        return _run(policy, report, step, limit, progress, conversation_ids, migrate_legacy)


def plan_compaction(
    policy: CompactionPolicy,
    *,
    limit: int | None = None,
    progress: Callable[[int], object] | None = None,
    conversation_ids: list[str] | None = None,
    migrate_legacy: bool = False,
) -> CompactReport:
    """What ``compact_oversized`` would do, measured without writing anything (a dry run)."""
    report = CompactReport(dry_run=True)
    return _run(
        policy,
        report,
        lambda sizes: _plan_batch(get_store(), policy, sizes, report, limit=limit),
        limit,
        progress,
        conversation_ids,
        migrate_legacy,
    )


def _run(policy, report, step, limit, progress, conversation_ids, migrate_legacy):
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    started = time.monotonic()
    store = get_store()
    if migrate_legacy:
        legacy = _scan(store.scan_legacy, batch=policy.batch_size)
        _migrate(store, report, itertools.chain.from_iterable(legacy))
    if conversation_ids is None:
        batches = _scan(
            store.scan_index, batch=policy.batch_size, key=attrgetter("conversation_id")
        )
    else:
        _migrate(store, report, conversation_ids)
        batches = [store.session_sizes(conversation_ids)]
        report.missing = [
            size.conversation_id
            for size in batches[0]
            if not size.exists and not store.is_legacy(size.conversation_id)
        ]
    for sizes in batches:
        step(sizes)
        if progress is not None:
            progress(len(sizes))
        if _reached(report, limit):
            break
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _reached(report, limit):
    return limit is not None and report.compacted + report.archived_sessions >= limit


def _scan(step, *, batch, key=lambda item: item):
    """Every item of a SCAN-like ``step(cursor, batch=)``, in batches, each only once."""
    cursor, seen = 0, set()
    while True:
        cursor, items = step(cursor, batch=batch)
        fresh = [item for item in items if key(item) not in seen]
        seen.update(map(key, fresh))
        yield fresh
        if cursor == 0:
            return


def _migrate(store, report, conversation_ids):
    for cid in conversation_ids:
        try:
            moved = store.legacy_size(cid) if report.dry_run else store.migrate_legacy(cid)
        except CorruptSession as e:
            report.skip(cid, e)
            continue
        report.migrated += bool(moved)
        report.migrated_bytes += moved


def _due(policy, sizes, report, *, limit, now):
    """The sessions of a scanned batch that compaction acts on, counted in the report."""
    for size in sizes:
        if _reached(report, limit):
            return
        report.scanned += 1
        if size.corrupt:
            report.skip(size.conversation_id, size.corrupt)
            continue
        if not size.exists:
            continue
        idle, oversized = policy.is_idle(size, now), policy.is_oversized(size)
        report.idle += idle
        report.oversized += oversized and not idle
        if idle or oversized:
            yield size, idle


def _compact_batch(store, policy, sizes, report, *, limit):
    for size, _ in _due(policy, sizes, report, limit=limit, now=time.time()):
        cid = size.conversation_id
        try:
            with session_guard(cid):
                result = _compact(store, policy, size)
        except (CorruptSession, SessionNotFound, SessionBusy) as e:
            report.skip(cid, e)
            continue
        except StoreUnavailable:
            raise
        except (StoreError, DatabaseError) as e:
            report.failed.append({"conversation_id": cid, "error": str(e)})
            continue
        report.add(result)
    stale = [size.conversation_id for size in sizes if not size.exists and not size.corrupt]
    if stale:
        report.pruned += store.prune_index(stale)


def _plan_batch(store, policy, sizes, report, *, limit):
    for size, idle in _due(policy, sizes, report, limit=limit, now=time.time()):
        try:
            report.add(_plan(store, policy, size, idle=idle))
        except (CorruptSession, SessionNotFound) as e:
            report.skip(size.conversation_id, e)


def _plan(store, policy, size, *, idle):
    """What compacting ``size`` would do, measured without writing."""
    cid = size.conversation_id
    if idle:
        return CompactResult(
            conversation_id=cid,
            action=Action.ARCHIVED,
            bytes_before=size.bytes,
            turns_archived=size.turns,
        )
    turns, freed = store.measure_trim(cid, keep=policy.keep_turns, pinned=policy.pinned)
    return CompactResult(
        conversation_id=cid,
        action=Action.TRIMMED if turns else Action.UNCHANGED,
        bytes_before=size.bytes,
        bytes_after=size.bytes - freed,
        turns_archived=turns,
    )


# --- the sessions admin's actions -------------------------------------------------------
# Each wraps the one service the command and the task call, measures the session before and
# after (for the operator's message), and re-counts it in the admin's census.


@dataclass(frozen=True, kw_only=True)
class SessionChange:
    conversation_id: str
    action: str
    """trimmed, compacted (or what compaction did), archived, deleted or restored."""
    turns_kept: int = 0
    """Turns in Redis afterwards."""
    turns_archived: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


def count_sessions() -> census.Census:
    """Recount the admin's census of every session, with the oversized policy in settings."""
    return census.build(get_store(), CompactionPolicy.from_settings())


def trim_session(conversation_id: str, *, keep: int, pinned: int = 0) -> SessionChange:
    """`trim_history` for the admin; a legacy blob moves to the split layout first."""
    store = get_store()
    store.migrate_legacy(conversation_id)
    before = _measure(store, conversation_id)
    result = trim_history(conversation_id, keep=keep, pinned=pinned)
    return _changed(store, conversation_id, "trimmed", before.bytes, result.turns_archived)


def compact_one_session(conversation_id: str) -> SessionChange:
    """`compact_session` with the policy in settings, for the admin."""
    store = get_store()
    result = compact_session(conversation_id, CompactionPolicy.from_settings())
    action = ("migrated, " if result.migrated else "") + str(result.action)
    return _changed(store, conversation_id, action, result.bytes_before, result.turns_archived)


def delete_session(conversation_id: str, *, discard: bool = False) -> SessionChange:
    """Delete a session from Redis; its state and every turn go to the archive first, unless
    ``discard``. Raises CorruptSession, leaving it all in place, when any of it cannot be decoded.
    """
    store = get_store()
    with session_guard(conversation_id):
        store.migrate_legacy(conversation_id)
        before = _measure(store, conversation_id)
        if discard:
            store.snapshot(conversation_id)  # decodes every value: nothing undecodable goes
            store.delete(conversation_id)
            archived, action = 0, "deleted"
        else:
            archived, action = _archive_idle(store, conversation_id).turns_archived, "archived"
    return _changed(store, conversation_id, action, before.bytes, archived)


def restore_archived(conversation_id: str) -> SessionChange:
    """`restore_session` for the admin: back into Redis with the last KEEP_TURNS turns."""
    store = get_store()
    restore_session(conversation_id)
    return _changed(store, conversation_id, "restored", 0, 0)


def _measure(store, conversation_id):
    (size,) = store.session_sizes([conversation_id])
    if size.corrupt:
        raise size.corrupt
    if not size.exists:
        raise SessionNotFound(conversation_id)
    return size


def _changed(store, conversation_id, action, bytes_before, archived):
    (after,) = store.session_sizes([conversation_id])
    census.touch(store, CompactionPolicy.from_settings(), [conversation_id])
    return SessionChange(
        conversation_id=conversation_id,
        action=action,
        turns_kept=after.turns if after.exists else 0,
        turns_archived=archived,
        bytes_before=bytes_before,
        bytes_after=after.bytes if after.exists else 0,
    )
