"""The sessions admin's actions: each wraps the one service the command and the task call,
measures the session before and after (for the operator's message), and re-counts it in the
admin's census."""

from dataclasses import dataclass

from convstore.exceptions import SessionNotFound
from sessions_app import census, legacy_blobs, maintenance
from sessions_app.compaction import CompactionPolicy
from sessions_app.services import (
    archive_idle,
    compact_session,
    restore_session,
    session_guard,
    trim_history,
)
from sessions_app.store import get_store


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
    blob = legacy_blobs.migrate_legacy(store, conversation_id)  # its bytes, 0 when none
    before = _measure(store, conversation_id)
    result = trim_history(conversation_id, keep=keep, pinned=pinned)
    action = ("migrated, " if blob else "") + "trimmed"
    return _changed(store, conversation_id, action, blob or before.bytes, result.turns_archived)


def compact_one_session(conversation_id: str) -> SessionChange:
    """`compact_session` with the policy in settings, for the admin."""
    store = get_store()
    # A legacy blob's size before is the blob's: compaction measures it after the move.
    blob = legacy_blobs.legacy_size(store, conversation_id)
    result = compact_session(conversation_id, CompactionPolicy.from_settings())
    action = ("migrated, " if result.migrated else "") + str(result.action)
    before = blob if result.migrated and blob else result.bytes_before
    return _changed(store, conversation_id, action, before, result.turns_archived)


def delete_session(conversation_id: str, *, discard: bool = False) -> SessionChange:
    """Delete a session from Redis; its state and every turn go to the archive first, unless
    ``discard``. Raises CorruptSession, leaving it all in place, when any of it cannot be decoded.
    """
    store = get_store()
    with session_guard(conversation_id):
        blob = legacy_blobs.migrate_legacy(store, conversation_id)  # its bytes, 0 when none
        before = _measure(store, conversation_id)
        if discard:
            # Decodes every value: nothing undecodable goes.
            maintenance.snapshot(store, conversation_id)
            store.delete(conversation_id)
            archived, action = 0, "deleted"
        else:
            archived, action = archive_idle(store, conversation_id).turns_archived, "archived"
    return _changed(store, conversation_id, action, blob or before.bytes, archived)


def restore_archived(conversation_id: str, incarnation: str | None = None) -> SessionChange:
    """`restore_session` for the admin: back into Redis with the last KEEP_TURNS turns."""
    store = get_store()
    restore_session(conversation_id, incarnation=incarnation)
    return _changed(store, conversation_id, "restored", 0, 0)


def _measure(store, conversation_id):
    (size,) = maintenance.session_sizes(store, [conversation_id])
    if size.corrupt:
        raise size.corrupt
    if not size.exists:
        raise SessionNotFound(conversation_id)
    return size


def _changed(store, conversation_id, action, bytes_before, archived):
    (after,) = maintenance.session_sizes(store, [conversation_id])
    census.touch(store, CompactionPolicy.from_settings(), [conversation_id])
    return SessionChange(
        conversation_id=conversation_id,
        action=action,
        turns_kept=after.turns if after.exists else 0,
        turns_archived=archived,
        bytes_before=bytes_before,
        bytes_after=after.bytes if after.exists else 0,
    )
