"""Business rules of the conversation store: trimming, compaction, archive and restore.

Admin views, commands and tasks call these; each function is one operation on the store.
"""

import itertools
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from operator import attrgetter

from django.conf import settings
from django.db import DatabaseError

from convstore.exceptions import (
    CorruptSession,
    SessionBusy,
    SessionNotFound,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from locks import exclusive
from sessions_app import archive, legacy_blobs, maintenance, metrics
from sessions_app.compacting import (
    archive_idle,
    compact_sessions,
    free_sessions,
    session_guard,
    trim_sessions,
)
from sessions_app.compaction import (
    Action,
    CompactionPolicy,
    CompactReport,
    CompactResult,
    TrimResult,
)
from sessions_app.store import get_store

# --- trim, compaction, archive ---------------------------------------------------------


COMPACTION_LOCK = "compact-oversized-sessions"


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
    store = get_store()
    with session_guard(conversation_id):
        # Turns appended after the trim started are left to the next one: a busy session
        # would otherwise keep it running while the appends go on.
        below = maintenance.next_seq(store, conversation_id) - keep
        trims = trim_sessions(
            store, {conversation_id: below}, keep=keep, pinned=pinned, batch=batch_size
        )
        return _outcome(trims[conversation_id])


def compact_session(conversation_id: str, policy: CompactionPolicy) -> CompactResult:
    """Migrate a legacy blob, archive the session if idle, else trim if oversized; re-encode.

    Raises CorruptSession (and leaves the session as it is) when a value cannot be decoded,
    SessionBusy when another operation on it is running.
    """
    store = get_store()
    with session_guard(conversation_id):
        migrated = legacy_blobs.migrate_legacy(store, conversation_id)
        (size,) = maintenance.session_sizes(store, [conversation_id])
        if size.corrupt:
            raise size.corrupt
        if not size.exists:
            raise SessionNotFound(conversation_id)
        if policy.is_idle(size, time.time()):
            result = archive_idle(store, conversation_id)
        else:
            result = _outcome(compact_sessions(store, policy, [size])[conversation_id])
        return replace(result, migrated=bool(migrated))


def _outcome(outcome):
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def restore_session(
    conversation_id: str, *, keep_turns: int | None = None, incarnation: str | None = None
) -> int:
    """Bring a session archived whole back into Redis with its last ``keep_turns`` turns.

    ``incarnation`` names which archived life of the id to restore (default: the last one
    archived). The other turns stay in the archive, where `load(window=None)` finds them.
    Refused with SessionExists while the id is live in Redis again. Returns the number of
    turns put back in Redis.
    """
    keep = settings.ROBOTPERF_COMPACTION["KEEP_TURNS"] if keep_turns is None else keep_turns
    if keep < 0:
        raise ValueError(f"keep_turns must not be negative, got {keep}")
    with session_guard(conversation_id):
        archived = archive.archived_session(conversation_id, incarnation)
        if archived is None:
            raise SessionNotFound(conversation_id)
        first = max(archived.next_seq - keep, 0)
        turns = (
            archive.archived_turns(conversation_id, archived.incarnation, from_seq=first)
            if keep
            else []
        )
        session = {**archived.state, "conversation_id": conversation_id}
        maintenance.restore(
            get_store(),
            session,
            incarnation=archived.incarnation,
            rev=archived.rev,
            next_seq=archived.next_seq,
            turns=turns,
        )
        archived.delete()
    return len(turns)


def rebuild_indexes(*, batch_size: int = 500) -> dict:
    """Rebuild the bytes and seen indexes from the keys in Redis (SCAN), pruning stale entries."""
    return maintenance.rebuild_indexes(get_store(), batch=batch_size)


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
    with metrics.compaction_run() as done, exclusive(COMPACTION_LOCK, timeout=timeout) as lock:
        report = CompactReport()
        if rebuild:
            report.indexes = rebuild_indexes(batch_size=policy.batch_size)

        def step(sizes):
            _compact_batch(get_store(), policy, sizes, report, limit=limit)
            lock.reacquire()

        done(_run(policy, report, step, limit, progress, conversation_ids, migrate_legacy))
        return report


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
        legacy = _scan(partial(legacy_blobs.scan_legacy, store), batch=policy.batch_size)
        _migrate(store, report, itertools.chain.from_iterable(legacy))
    if conversation_ids is None:
        batches = _scan(
            partial(maintenance.scan_index, store),
            batch=policy.batch_size,
            key=attrgetter("conversation_id"),
        )
    else:
        _migrate(store, report, conversation_ids)
        batches = [maintenance.session_sizes(store, conversation_ids)]
        report.missing = [
            size.conversation_id
            for size in batches[0]
            if not size.exists and not legacy_blobs.legacy_size(store, size.conversation_id)
        ]
    for sizes in batches:
        if migrate_legacy:
            _split_docs(store, report, sizes)
        step(sizes)
        if progress is not None:
            progress(len(sizes))
        if _reached(report, limit):
            break
    if migrate_legacy:
        report.legacy_left = legacy_blobs.legacy_totals(store)[0]
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _split_docs(store, report, sizes):
    cids = [size.conversation_id for size in sizes if size.exists and not size.corrupt]
    try:
        report.docs_split += legacy_blobs.split_docs(store, cids, dry_run=report.dry_run)
    except CorruptSession as e:
        report.skip(e.key, e)


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
            if report.dry_run:
                moved = legacy_blobs.legacy_size(store, cid)
            else:
                moved = legacy_blobs.migrate_legacy(store, cid)
        except (CorruptSession, StoreFull) as e:
            report.skip(cid, e)
            continue
        report.migrated += bool(moved)
        report.migrated_bytes += moved


def _due(policy, sizes, report, *, limit, now):
    """The sessions of a scanned batch that compaction acts on, counted in the report."""
    for size in sizes:
        if _reached(report, limit):
            return
        if size.bad_entry is not None:
            report.bad_entry(size.conversation_id, size.bad_entry)
            if not size.exists and not size.corrupt:
                continue  # an entry that names no session
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
    due = _due(policy, sizes, report, limit=limit, now=time.time())
    # In chunks no larger than what is left of ``limit``: ``_due`` counts as it goes.
    while chunk := list(itertools.islice(due, _room(report, limit, len(sizes)))):
        idle = [size for size, is_idle in chunk if is_idle]
        for size in idle:
            cid = size.conversation_id
            _record(report, cid, _guarded(cid, partial(archive_idle, store, cid)))
        rest = [size for size, is_idle in chunk if not is_idle]
        with free_sessions([size.conversation_id for size in rest]) as held:
            outcomes = compact_sessions(
                store, policy, [size for size in rest if size.conversation_id in held]
            )
        for size in rest:
            cid = size.conversation_id
            if cid not in outcomes:  # another operation holds it: wait for it, one at a time
                one = partial(compact_sessions, store, policy, [size])
                outcomes[cid] = _guarded(cid, lambda one=one, cid=cid: one()[cid])
            _record(report, cid, outcomes[cid])
    stale = [
        size.conversation_id
        for size in sizes
        if not size.exists and not size.corrupt and size.bad_entry is None
    ]
    if stale:
        report.pruned += maintenance.prune_index(store, stale)


def _room(report, limit, batch):
    if limit is None:
        return batch
    return max(limit - report.compacted - report.archived_sessions, 0)


def _guarded(conversation_id, operation):
    """``operation()`` under the session's own lock, or the error it raised."""
    try:
        with session_guard(conversation_id):
            return operation()
    except (StoreError, DatabaseError) as e:
        return e


def _record(report, cid, outcome):
    if isinstance(outcome, (CorruptSession, SessionNotFound, SessionBusy)):
        report.skip(cid, outcome)
    elif isinstance(outcome, StoreUnavailable) and not isinstance(outcome, StoreFull):
        raise outcome
    elif isinstance(outcome, (StoreError, DatabaseError)):
        # StoreFull: what it could not write; the others may still free memory.
        report.failed.append({"conversation_id": cid, "error": str(outcome)})
    else:
        report.add(outcome)


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
    turns, freed = maintenance.measure_trim(
        store, cid, keep=policy.keep_turns, pinned=policy.pinned
    )
    return CompactResult(
        conversation_id=cid,
        action=Action.TRIMMED if turns else Action.UNCHANGED,
        bytes_before=size.bytes,
        bytes_after=size.bytes - freed,
        turns_archived=turns,
    )
