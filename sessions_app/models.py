"""The database archive of the conversation store: turns trimmed from Redis, and idle sessions.

Redis holds the hot set; these tables keep the rest, so `store.load(window=None)` sees it all.
"""

import orjson
from django.db import IntegrityError, connections, models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ArchivedTurnQuerySet(models.QuerySet):
    def of_conversation(self, conversation_id, incarnation, *, from_seq=0):
        """The archived turns of one incarnation of a conversation from ``from_seq`` on, oldest
        first."""
        return self.filter(
            conversation_id=conversation_id, incarnation=incarnation, seq__gte=from_seq
        ).order_by("seq")

    def add_missing(self, rows):
        """Insert (conversation_id, incarnation, seq, role, turn, turned_at) rows; returns how
        many were inserted.

        Rows already archived are left as they are (ON CONFLICT DO NOTHING), so a repeated copy
        adds nothing. PostgreSQL gets the rows by COPY, SQLite by one executemany: both instead
        of bulk_create, which prepares every value of every row in Python and made the archive
        the slowest step of compaction.
        """
        connection = connections[self.db]
        now = timezone.now()
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                return _copy_missing(cursor, self.model._meta.db_table, rows, now)
            ops = connection.ops
            now = ops.adapt_datetimefield_value(now)
            params = [
                (cid, inc, seq, role, _orjson_text(turn), ops.adapt_datetimefield_value(at), now)
                for cid, inc, seq, role, turn, at in rows
            ]
            cursor.executemany(_insert(connection, self.model._meta.db_table, "VALUES"), params)
            return cursor.rowcount


COLUMNS = ("conversation_id", "incarnation", "seq", "role", "turn", "turned_at", "archived_at")


def _insert(connection, table, source):
    """INSERT of the COLUMNS from ``source`` ("VALUES" or a table) that skips rows archived."""
    quote = connection.ops.quote_name
    names = ", ".join(map(quote, COLUMNS))
    values = f"VALUES ({', '.join(['%s'] * len(COLUMNS))})"
    select = values if source == "VALUES" else f"SELECT {names} FROM {quote(source)}"
    return (
        f"INSERT INTO {quote(table)} ({names}) {select} "
        "ON CONFLICT (conversation_id, incarnation, seq) DO NOTHING"
    )


def _copy_missing(cursor, table, rows, now):
    """PostgreSQL: the rows by COPY straight into the table, the common case (none archived
    yet); when one is (a copy repeated after an interrupted run), by COPY into a temporary
    table, then inserted from it without the rows already there."""
    connection = cursor.db
    quote = connection.ops.quote_name
    values = [(*row[:4], _orjson_text(row[4]), row[5], now) for row in rows]
    try:
        with transaction.atomic(using=connection.alias):  # a savepoint to fall back to
            _copy(cursor, table, values)
        return len(values)
    except IntegrityError:
        pass
    scratch = "archived_turn_copy"
    cursor.execute(
        f"CREATE TEMPORARY TABLE {quote(scratch)} ON COMMIT DROP AS "
        f"SELECT {', '.join(map(quote, COLUMNS))} FROM {quote(table)} WITH NO DATA"
    )
    _copy(cursor, scratch, values)
    cursor.execute(_insert(connection, table, scratch))
    inserted = cursor.rowcount
    cursor.execute(f"DROP TABLE {quote(scratch)}")
    return inserted


def _copy(cursor, table, values):
    connection = cursor.db
    names = ", ".join(map(connection.ops.quote_name, COLUMNS))
    # psycopg's own cursor (Django's has no COPY): its errors become Django's as Django's do.
    with (
        connection.wrap_database_errors,
        cursor.cursor.copy(f"COPY {connection.ops.quote_name(table)} ({names}) FROM STDIN") as copy,
    ):
        for row in values:
            copy.write_row(row)


def _orjson_text(value):
    """A JSON column's value through orjson: the stdlib encoder was a third of the archive's
    time. The turns come from orjson, so it can write them all."""
    return orjson.dumps(value).decode()


class ArchivedTurn(models.Model):
    """One history turn moved out of Redis; (conversation_id, incarnation, seq) names it once
    and for all."""

    conversation_id = models.CharField(_("conversation id"), max_length=255)
    incarnation = models.CharField(
        _("incarnation"),
        max_length=32,
        blank=True,
        default="",
        help_text=_("Which creation of the conversation id in Redis it belongs to."),
    )
    seq = models.PositiveBigIntegerField(_("seq"))
    role = models.CharField(_("role"), max_length=32, blank=True)
    turn = models.JSONField(
        _("turn"), help_text=_("The turn as the robot stored it, without its seq.")
    )
    turned_at = models.DateTimeField(
        _("turn time"), null=True, blank=True, help_text=_("The turn's own time.")
    )
    archived_at = models.DateTimeField(_("archived at"), auto_now_add=True)

    objects = ArchivedTurnQuerySet.as_manager()

    class Meta:
        # The unique index also serves "all turns of a conversation in order".
        constraints = [
            models.UniqueConstraint(
                fields=["conversation_id", "incarnation", "seq"],
                name="archived_turn_conversation_incarnation_seq",
            )
        ]
        ordering = ["conversation_id", "incarnation", "seq"]
        verbose_name = _("archived turn")
        verbose_name_plural = _("archived turns")

    def __str__(self):
        return f"{self.conversation_id} #{self.seq}"


class ArchivedSession(models.Model):
    """A whole session moved out of Redis after it stayed idle; its turns are ArchivedTurns."""

    conversation_id = models.CharField(_("conversation id"), max_length=255)
    incarnation = models.CharField(
        _("incarnation"),
        max_length=32,
        blank=True,
        default="",
        help_text=_("Which creation of the conversation id in Redis it belongs to."),
    )
    bot_id = models.CharField(_("bot id"), max_length=255, blank=True, db_index=True)
    state = models.JSONField(
        _("state"), help_text=_("The session without its history, bot_config included.")
    )
    rev = models.PositiveBigIntegerField(_("revision"))
    next_seq = models.PositiveBigIntegerField(
        _("next seq"), help_text=_("The seq the next appended turn gets.")
    )
    bytes = models.PositiveBigIntegerField(
        _("bytes"), help_text=_("Its size in Redis when it was archived.")
    )
    last_seen_at = models.DateTimeField(_("last activity"), null=True, blank=True)
    archived_at = models.DateTimeField(_("archived at"), auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["conversation_id", "incarnation"],
                name="archived_session_conversation_incarnation",
            )
        ]
        ordering = ["-archived_at"]
        verbose_name = _("archived session")
        verbose_name_plural = _("archived sessions")
        permissions = [("restore_archivedsession", "Can restore an archived session to Redis")]

    def __str__(self):
        return self.conversation_id


class ConversationSession(models.Model):
    """A conversation in Redis, as the admin names it: no table, only an entry and permissions.

    The admin reads sessions from the store (index ZSETs, pipelines); this model gives it a
    place in the admin index, breadcrumbs, the history (LogEntry) and these permissions.
    """

    conversation_id = models.CharField(max_length=255, primary_key=True)

    class Meta:
        managed = False
        # Not "conversation sessions": that is the app's name, and breadcrumbs show both.
        verbose_name = _("session in Redis")
        verbose_name_plural = _("sessions in Redis")
        default_permissions = ("view", "delete")
        permissions = [
            ("trim_conversationsession", "Can trim the history of a conversation session"),
            ("compact_conversationsession", "Can compact conversation sessions"),
        ]

    def __str__(self):
        return self.conversation_id
