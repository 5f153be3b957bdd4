"""The database archive: turns trimmed from Redis and sessions archived whole, written and read.

Used by the store (loads that reach past Redis) and by the services (trim, compaction, restore).
"""

from datetime import UTC, datetime
from typing import NamedTuple

from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from convstore.exceptions import ArchiveConflict
from sessions_app.models import ArchivedSession, ArchivedTurn


class Copy(NamedTuple):
    """The turns of one incarnation of a conversation to copy to the archive."""

    conversation_id: str
    incarnation: str
    turns: list[dict]


def archive_turns(*, conversation_id: str, incarnation: str, turns: list[dict]) -> None:
    """Copy turns (each with its seq) to the archive; rows already there are left as they are.

    A row already there must hold the same turn (a copy repeated after an interrupted run):
    one that holds another is ArchiveConflict, and nothing of this batch is committed, so the
    caller leaves these turns in Redis.
    """
    # Durable: the rows must be committed before the turns leave Redis.
    with transaction.atomic(durable=True):
        _copy([Copy(conversation_id, incarnation, turns)])


def archive_many(copies: list[Copy]) -> dict[str, Exception]:
    """Copy the turns of several conversations in one transaction, as `archive_turns` does;
    returns the conversations whose copy failed, with the error, none of their rows committed.

    When the transaction fails (a conflict, a turn the database refuses), each copy is made
    again in a transaction of its own: one conversation's failure holds back no other.
    """
    try:
        with transaction.atomic(durable=True):
            _copy(copies)
        return {}
    except (ArchiveConflict, DatabaseError) as e:
        if len(copies) == 1:
            return {copies[0].conversation_id: e}
    failures = {}
    for copy in copies:
        try:
            archive_turns(**copy._asdict())
        except (ArchiveConflict, DatabaseError) as e:
            failures[copy.conversation_id] = e
    return failures


def _copy(copies):
    rows = [(copy, [_row(copy, turn) for turn in copy.turns]) for copy in copies]
    every = [row for _, some in rows for row in some]
    if every and ArchivedTurn.objects.add_missing(every) != len(every):
        for copy, some in rows:
            _check_same(copy.conversation_id, copy.incarnation, some)


def _row(copy, turn):
    return (
        copy.conversation_id,
        copy.incarnation,
        turn["seq"],
        str(turn.get("role", ""))[:32],
        {k: v for k, v in turn.items() if k != "seq"},
        _turn_time(turn),
    )


def _check_same(conversation_id, incarnation, rows):
    """ArchiveConflict unless every row is archived with the same turn."""
    wanted = {seq: turn for _, _, seq, _, turn, _ in rows}
    stored = dict(
        ArchivedTurn.objects.filter(
            conversation_id=conversation_id, incarnation=incarnation, seq__in=list(wanted)
        ).values_list("seq", "turn")
    )
    differ = sorted(seq for seq, turn in wanted.items() if stored.get(seq) != turn)
    if differ:
        raise ArchiveConflict(conversation_id, incarnation, differ)


def archived_turns(conversation_id: str, incarnation: str, *, from_seq: int = 0) -> list[dict]:
    """The archived turns of one incarnation of a conversation from ``from_seq`` on, oldest
    first, with their seq."""
    rows = ArchivedTurn.objects.of_conversation(conversation_id, incarnation, from_seq=from_seq)
    return [{**turn, "seq": seq} for seq, turn in rows.values_list("seq", "turn")]


async def aarchived_turns(
    conversation_id: str, incarnation: str, *, from_seq: int = 0
) -> list[dict]:
    """`archived_turns` for asyncio callers, through Django's async ORM."""
    rows = ArchivedTurn.objects.of_conversation(conversation_id, incarnation, from_seq=from_seq)
    return [{**turn, "seq": seq} async for seq, turn in rows.values_list("seq", "turn")]


class DatabaseArchive:
    """The archive as the stores read it."""

    turns = staticmethod(archived_turns)
    aturns = staticmethod(aarchived_turns)


def archive_session(*, conversation_id, incarnation, state, rev, next_seq, size, seen):
    """Write (or overwrite) the row of an incarnation archived whole; (row, whether it is new).

    Committed when this returns: the Redis copy may go only after that.
    """
    with transaction.atomic(durable=True):
        return ArchivedSession.objects.update_or_create(
            conversation_id=conversation_id,
            incarnation=incarnation,
            defaults={
                "bot_id": str(state.get("bot_id", ""))[:255],
                "state": state,
                "rev": rev,
                "next_seq": next_seq,
                "bytes": size,
                "last_seen_at": seen and datetime.fromtimestamp(seen, tz=UTC),
            },
        )


def forget_session(row):
    """Delete a row that `archive_session` created, if it still holds what it wrote."""
    ArchivedSession.objects.filter(pk=row.pk, rev=row.rev, next_seq=row.next_seq).delete()


def archived_session(conversation_id, incarnation=None):
    """The archived whole session of that incarnation; without one, the last archived."""
    rows = ArchivedSession.objects.filter(conversation_id=conversation_id)
    if incarnation is not None:
        rows = rows.filter(incarnation=incarnation)
    return rows.order_by("-archived_at", "-pk").first()


def _turn_time(turn):
    value = next((turn[k] for k in ("created_at", "time", "timestamp") if turn.get(k)), None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if not isinstance(value, str):
        return None
    try:
        # fromisoformat reads what the robot writes, several times faster than parse_datetime.
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = parse_datetime(value)
        except ValueError:
            return None
    if moment is not None and timezone.is_naive(moment):
        return timezone.make_aware(moment, UTC)
    return moment
