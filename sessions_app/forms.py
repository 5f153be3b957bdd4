"""Forms of the sessions admin: the list's query string, and the fields of its confirm pages."""

from django import forms
from django.utils.translation import gettext_lazy as _

from sessions_app import profiling, selectors, slow_calls


class SessionQueryForm(forms.Form):
    """The list's GET parameters; anything invalid falls back to the default."""

    sort = forms.ChoiceField(
        choices=[("size", _("size")), ("turns", _("turns")), ("seen", _("last activity"))],
        required=False,
    )
    order = forms.ChoiceField(choices=[("desc", "desc"), ("asc", "asc")], required=False)
    oversized = forms.BooleanField(required=False)
    legacy = forms.BooleanField(required=False)
    bot = forms.RegexField(regex=r"^[0-9a-f]{0,64}$", required=False)
    q = forms.CharField(max_length=255, required=False, strip=True)
    p = forms.IntegerField(min_value=1, required=False)

    def query(self):
        data = self.cleaned_data if self.is_valid() else {}
        return selectors.SessionQuery(
            sort=data.get("sort") or "size",
            descending=data.get("order") != "asc",
            oversized=bool(data.get("oversized")),
            legacy=bool(data.get("legacy")),
            bot=data.get("bot") or "",
            search=data.get("q") or "",
            page=data.get("p") or 1,
        )


class SlowCallQueryForm(forms.Form):
    """The Slow calls page's filters (GET); anything invalid shows every call."""

    call = forms.ChoiceField(
        label=_("Call"),
        choices=[("", _("every call")), *((name, name) for name in slow_calls.CALLS)],
        required=False,
    )
    conversation_id = forms.CharField(
        label=_("Conversation id"), max_length=255, required=False, strip=True
    )

    def filters(self):
        data = self.cleaned_data if self.is_valid() else {}
        return {"call": data.get("call", ""), "conversation_id": data.get("conversation_id", "")}


class TrimForm(forms.Form):
    keep = forms.IntegerField(
        label=_("Turns to keep in Redis"),
        min_value=0,
        help_text=_("The last this many turns stay; the older ones move to the archive."),
    )
    pinned = forms.IntegerField(
        label=_("Pinned turns"),
        min_value=0,
        help_text=_("The first this many turns (e.g. the system turn) stay as well."),
    )


class DeleteForm(forms.Form):
    discard = forms.BooleanField(
        label=_("Discard: do not archive the state and the history first"),
        required=False,
    )


class ProfileForm(forms.Form):
    runs = forms.IntegerField(
        label=_("Loads"),
        min_value=1,
        max_value=profiling.MAX_RUNS,
        initial=20,
        help_text=_("Capped for large sessions, so that one click cannot hog the server."),
    )
    window = forms.IntegerField(
        label=_("Window (last turns loaded)"),
        min_value=0,
        max_value=10_000,
        initial=20,
        required=False,
        help_text=_("Empty: every turn, the archived ones included."),
    )
