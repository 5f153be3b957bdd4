"""What the sessions admin's pages share: the operator's message for an action, and its log."""

from django.contrib.admin.models import LogEntry
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from sessions_app.models import ConversationSession

ACTION_WORDS = {
    "trimmed": gettext_lazy("trimmed"),
    "re-encoded": gettext_lazy("re-encoded"),
    "unchanged": gettext_lazy("unchanged"),
    "archived": gettext_lazy("archived"),
    "migrated": gettext_lazy("migrated"),
    "deleted": gettext_lazy("deleted"),
    "restored": gettext_lazy("restored"),
}


def describe(change):
    """What an action did, for the operator: "…kept 50 turns, archived 312, 1.2 MB → 80 KB"."""
    done = ", ".join(str(ACTION_WORDS.get(w, w)) for w in change.action.split(", "))
    return _(
        "%(id)s: %(done)s; kept %(kept)s turns, archived %(archived)s, %(before)s → %(after)s"
    ) % {
        "id": change.conversation_id,
        "done": done,
        "kept": change.turns_kept,
        "archived": change.turns_archived,
        "before": filesizeformat(change.bytes_before),
        "after": filesizeformat(change.bytes_after),
    }


def log_change(request, cid, flag, message):
    LogEntry.objects.log_actions(
        user_id=request.user.pk,
        queryset=[ConversationSession(conversation_id=cid)],
        action_flag=flag,
        change_message=message,
        single_object=True,
    )
