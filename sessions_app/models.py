"""The database archive of the conversation store: turns trimmed from Redis, and idle sessions.

Redis holds the hot set; these tables keep the rest, so `store.load(window=None)` sees it all.
"""

import orjson
from django.db import connections, models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ArchivedTurnQuerySet(models.QuerySet):
    def of_conversation(self, conversation_id, incarnation, *, from_seq=0):
        """The archived turns of one incarnation of a conversation from ``from_seq`` on, oldest
        first."""
        return self.filter(
            conversation_id=conversation_id, incarnation=incarnation, seq__gte=from_seq
        ).order_by("seq")

    def add_missing(self, conversation_id, incarnation, rows):
        """Insert (seq, role, turn, turned_at) rows; returns how many were inserted.

        Rows already archived are left as they are (ON CONFLICT DO NOTHING, SQLite and
        PostgreSQL), so a repeated copy adds nothing. One executemany instead of bulk_create,
        which prepares every value of every row in Python and made the archive the slowest step
        of compaction.
        """
        connection = connections[self.db]
        ops, quote = connection.ops, connection.ops.quote_name
        columns = (
            "conversation_id",
            "incarnation",
            "seq",
            "role",
            "turn",
            "turned_at",
            "archived_at",
        )
        sql = (
            f"INSERT INTO {quote(self.model._meta.db_table)} ({', '.join(map(quote, columns))}) "
            f"VALUES ({', '.join(['%s'] * len(columns))}) "
            "ON CONFLICT (conversation_id, incarnation, seq) DO NOTHING"
        )
        now = ops.adapt_datetimefield_value(timezone.now())
        json_value = _json_adapter(connection)
        params = [
            (
                conversation_id,
                incarnation,
                seq,
                role,
                json_value(turn),
                ops.adapt_datetimefield_value(turned_at),
                now,
            )
            for seq, role, turn, turned_at in rows
        ]
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)
            return cursor.rowcount


def _json_adapter(connection):
    """A JSON column's parameter from a value, through orjson: the stdlib encoder was a third
    of the archive's time. The turns come from orjson, so it can write them all."""
    if connection.vendor == "postgresql":
        from psycopg.types.json import Jsonb

        return lambda value: Jsonb(value, dumps=_orjson_text)
    return _orjson_text


def _orjson_text(value):
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
