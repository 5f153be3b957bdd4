"""Trimming and compacting sessions a batch at a time: each step one round trip for the whole
batch, the archive one transaction, the sessions' own locks taken and released together.

services.py applies them to one session (a batch of one) or to a scanned batch.
"""

from contextlib import contextmanager

from django.conf import settings

from convstore.exceptions import SessionBusy, StoreUnavailable
from locks import LockHeld, LockUnavailable, exclusive, exclusive_each
from sessions_app import archive, maintenance, trimming
from sessions_app.compaction import Action, CompactResult, TrimResult


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
    except LockUnavailable as e:
        raise StoreUnavailable(str(e)) from e


@contextmanager
def free_sessions(conversation_ids):
    """Hold the own lock of each conversation no other operation holds, all in one round
    trip; yields the ids held (the others are left to `session_guard`, which waits)."""
    timeout = settings.ROBOTPERF_COMPACTION["SESSION_LOCK_TIMEOUT"]
    names = {f"conv:{cid}": cid for cid in conversation_ids}
    try:
        with exclusive_each(list(names), timeout=timeout) as held:
            yield {names[name] for name in held}
    except LockUnavailable as e:
        raise StoreUnavailable(str(e)) from e


def trim_sessions(store, targets, *, keep, pinned, batch):
    """Move each session's turns before its last ``keep`` (after the first ``pinned``) to the
    archive; ``targets`` maps each id to the seq its trim stops at (turns appended after the
    trim started are left to the next one). Returns a TrimResult or the error, per id.

    Each step is copied to the database first, then exactly the copied turns are removed from
    Redis, checked atomically there: a turn appended meanwhile stays, a concurrent trim never
    removes a turn twice, and a run that stops between the two steps is repaired by the next
    one (the copy ignores rows already archived).
    """
    archived, freed = dict.fromkeys(targets, 0), dict.fromkeys(targets, 0)
    errors = {}
    active = list(targets)
    while active:
        found = trimming.trim_candidates_many(
            store, [(cid, targets[cid]) for cid in active], keep=keep, pinned=pinned, batch=batch
        )
        copies = []
        for cid, outcome in zip(active, found, strict=True):
            if isinstance(outcome, Exception):
                errors[cid] = outcome
            elif outcome[1]:
                # Copied under the incarnation they were read from, removed only from that one.
                copies.append(archive.Copy(cid, *outcome))
        errors.update(archive.archive_many(copies))
        copied = [copy for copy in copies if copy.conversation_id not in errors]
        removals = [
            (copy.conversation_id, [turn["seq"] for turn in copy.turns], copy.incarnation)
            for copy in copied
        ]
        removed = trimming.remove_archived_many(store, removals, pinned=pinned)
        active = []
        for copy, outcome in zip(copied, removed, strict=True):
            cid = copy.conversation_id
            if isinstance(outcome, Exception):
                errors[cid] = outcome
                continue
            archived[cid] += outcome[0]
            freed[cid] += outcome[1]
            if len(copy.turns) == batch:  # a full step: there may be more
                active.append(cid)
    results = {}
    for cid in targets:
        if cid in errors:
            # A trim stopped by a corrupt turn has moved the steps before it: say how many.
            errors[cid].turns_archived = archived[cid]
            results[cid] = errors[cid]
        else:
            results[cid] = TrimResult(
                conversation_id=cid, turns_archived=archived[cid], bytes_freed=freed[cid]
            )
    return results


def compact_sessions(store, policy, sizes):
    """Re-encode, and trim if oversized, split-layout sessions whose sizes were just read (a
    scan's, or one session's); a CompactResult or the error, per id.

    Nothing moves before the state is known to decode (re-encoding it decodes every field): a
    session that cannot be re-encoded is reported as corrupt with all of it still in Redis.
    """
    cids = [size.conversation_id for size in sizes]
    results = dict(zip(cids, trimming.reencode_states(store, cids), strict=True))
    sizes = [size for size in sizes if _ok(results[size.conversation_id])]
    trims = trim_sessions(
        store,
        {
            size.conversation_id: size.next_seq - policy.keep_turns
            for size in sizes
            if policy.is_oversized(size)
        },
        keep=policy.keep_turns,
        pinned=policy.pinned,
        batch=policy.batch_size,
    )
    results.update((cid, trim) for cid, trim in trims.items() if not _ok(trim))
    sizes = [size for size in sizes if _ok(results[size.conversation_id])]
    cids = [size.conversation_id for size in sizes]
    turns_saved = dict(zip(cids, trimming.reencode_turns_many(store, cids), strict=True))
    for size in sizes:
        cid = size.conversation_id
        trimmed = trims.get(cid) or TrimResult(conversation_id=cid, turns_archived=0, bytes_freed=0)
        saved = results[cid] + turns_saved[cid] if _ok(turns_saved[cid]) else turns_saved[cid]
        results[cid] = saved if not _ok(saved) else _result(size, trimmed, saved)
    return results


def _result(size, trimmed, saved):
    actions = {
        (False, False): Action.UNCHANGED,
        (True, False): Action.TRIMMED,
        (False, True): Action.REENCODED,
        (True, True): Action.TRIMMED_REENCODED,
    }
    return CompactResult(
        conversation_id=size.conversation_id,
        action=actions[bool(trimmed.turns_archived), bool(saved)],
        bytes_before=size.bytes,
        # What this compaction changed; turns appended meanwhile are not its doing.
        bytes_after=size.bytes - trimmed.bytes_freed - saved,
        turns_archived=trimmed.turns_archived,
    )


def archive_idle(store, conversation_id):
    """Move a whole idle session to the database; its Redis copy goes only once the row is in.

    A run deletes only a row that it created itself: another run may have archived (and
    dropped) the session meanwhile, and its row is then the only copy of the state.
    """
    snapshot = maintenance.snapshot(store, conversation_id)
    state = {k: v for k, v in snapshot.session.items() if k != "history"}
    history = snapshot.session["history"]
    incarnation = snapshot.incarnation
    archive.archive_turns(conversation_id=conversation_id, incarnation=incarnation, turns=history)
    row, created = archive.archive_session(
        conversation_id=conversation_id,
        incarnation=incarnation,
        state=state,
        rev=snapshot.rev,
        next_seq=snapshot.next_seq,
        size=snapshot.bytes,
        seen=snapshot.seen,
    )
    dropped = maintenance.drop_archived(
        store, conversation_id, incarnation=incarnation, rev=snapshot.rev, seq=snapshot.next_seq
    )
    if dropped == maintenance.WRITTEN:
        # Written meanwhile, so not idle: it stays in Redis; its copied turns are harmless.
        if created:
            archive.forget_session(row)
        raise SessionBusy(conversation_id)
    return CompactResult(
        conversation_id=conversation_id,
        action=Action.ARCHIVED,
        bytes_before=snapshot.bytes,
        turns_archived=len(history),
    )


def _ok(outcome):
    return not isinstance(outcome, Exception)
