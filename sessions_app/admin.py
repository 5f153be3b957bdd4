"""The sessions admin: a size dashboard, a list and a detail page over Redis, a load profile, and
confirm-then-POST actions (trim, compact, delete, restore); the archive, read-only.

Every view calls one selector or service; pages read Redis through the index ZSETs.
"""

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from sessions_app import actions, charts, forms, profiling, selectors, tasks
from sessions_app.compaction import CompactionPolicy
from sessions_app.models import ArchivedSession, ArchivedTurn, ConversationSession
from sessions_app.store import SessionNotFound, StoreError

TEMPLATES = "admin/sessions_app/conversationsession"
ACTION_WORDS = {
    "trimmed": gettext_lazy("trimmed"),
    "re-encoded": gettext_lazy("re-encoded"),
    "unchanged": gettext_lazy("unchanged"),
    "archived": gettext_lazy("archived"),
    "migrated": gettext_lazy("migrated"),
    "deleted": gettext_lazy("deleted"),
    "restored": gettext_lazy("restored"),
}

# The admin index links to the dashboard (a documented AdminSite attribute; no custom site).
admin.site.index_template = "admin/sessions_app/index.html"


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


@admin.register(ConversationSession)
class ConversationSessionAdmin(admin.ModelAdmin):
    # --- permissions: view and delete are Django's, trim and compact our own ----------------

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # sessions change only through the actions, each with its permission

    def has_trim_permission(self, request):
        return request.user.has_perm("sessions_app.trim_conversationsession")

    def has_compact_permission(self, request):
        return request.user.has_perm("sessions_app.compact_conversationsession")

    def get_queryset(self, request):
        return ConversationSession.objects.none()  # no table: the sessions are in Redis

    def get_object(self, request, object_id, from_field=None):
        # For the history page: LogEntry rows name the conversation id.
        return ConversationSession(conversation_id=object_id)

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("dashboard/", view(self.dashboard_view), name=f"{name}_dashboard"),
            path("compact-now/", view(self.compact_now_view), name=f"{name}_compact_now"),
            path("bulk/", view(self.bulk_view), name=f"{name}_bulk"),
            path("<path:object_id>/trim/", view(self.trim_view), name=f"{name}_trim"),
            path("<path:object_id>/compact/", view(self.compact_view), name=f"{name}_compact"),
            path("<path:object_id>/profile/", view(self.profile_view), name=f"{name}_profile"),
            *super().get_urls(),  # list, change (the detail), delete and history: below
        ]

    # --- pages ------------------------------------------------------------------------

    def dashboard_view(self, request):
        self._require(request, self.has_view_permission)
        data = selectors.dashboard(CompactionPolicy.from_settings())
        return self._render(
            request,
            "dashboard.html",
            _("Session sizes"),
            data=data,
            histogram=charts.histogram(data.histogram),
            policy=CompactionPolicy.from_settings(),
            can_compact=self.has_compact_permission(request),
            health=data,
        )

    def changelist_view(self, request, extra_context=None):
        self._require(request, self.has_view_permission)
        query = forms.SessionQueryForm(request.GET).query()
        page = selectors.session_page(query, CompactionPolicy.from_settings())
        return self._render(
            request,
            "list.html",
            _("Conversation sessions"),
            page=page,
            query=query,
            actions=self._bulk_actions(request),
            links=_ListLinks(request, query, page),
            health=page,
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self._require(request, self.has_view_permission)
        cid = unquote(object_id)
        try:
            detail = selectors.session_detail(cid)
        except SessionNotFound:
            raise Http404(
                _("No conversation %(id)s in Redis or the archive.") % {"id": cid}
            ) from None
        return self._render(
            request,
            "detail.html",
            cid,
            detail=detail,
            parts=detail.parts and charts.horizontal(_part_rows(detail.parts)),
            archive_url=_archive_url("archivedturn", cid),
            archived_session_url=detail.archived_session and _archive_url("archivedsession", cid),
            can_trim=self.has_trim_permission(request),
            can_compact=self.has_compact_permission(request),
            can_delete=self.has_delete_permission(request),
            health=detail,
        )

    def profile_view(self, request, object_id):
        self._require(request, self.has_view_permission)
        cid = unquote(object_id)
        form = forms.ProfileForm(_posted(request))
        result, error = None, None
        if request.method == "POST" and form.is_valid():
            try:
                result = profiling.profile_load(cid, **form.cleaned_data)
            except SessionNotFound:
                raise Http404(cid) from None
            except StoreError as e:
                error = str(e)
        return self._render(
            request,
            "profile.html",
            _("Load profile"),
            cid=cid,
            form=form,
            result=result,
            error=error,
            waterfall=result and charts.waterfall([(n, t.median) for n, t in result.phases]),
            versus=result and charts.horizontal(_versus_rows(result), label_width=240),
        )

    # --- actions: GET asks, POST acts ---------------------------------------------------

    def trim_view(self, request, object_id):
        policy = CompactionPolicy.from_settings()
        return self._act(
            request,
            object_id,
            permission=self.has_trim_permission,
            title=_("Trim the history"),
            form_class=forms.TrimForm,
            initial={"keep": policy.keep_turns, "pinned": policy.pinned},
            run=actions.trim_session,
        )

    def compact_view(self, request, object_id):
        return self._act(
            request,
            object_id,
            permission=self.has_compact_permission,
            title=_("Compact"),
            run=actions.compact_one_session,
        )

    def delete_view(self, request, object_id, extra_context=None):
        return self._act(
            request,
            object_id,
            permission=self.has_delete_permission,
            title=_("Delete from Redis"),
            form_class=forms.DeleteForm,
            run=actions.delete_session,
            flag=DELETION,
        )

    def compact_now_view(self, request):
        self._require(request, self.has_compact_permission)
        if request.method == "POST":
            queued = tasks.compact_oversized_sessions.delay()
            self.message_user(
                request,
                _("Compaction queued (task %(id)s): a worker runs it; its result shows below.")
                % {"id": queued.id},
                messages.SUCCESS,
            )
            return HttpResponseRedirect(self._url("dashboard"))
        return self._render(request, "confirm.html", _("Compact oversized sessions now"))

    def bulk_view(self, request):
        if request.method != "POST":
            return HttpResponseRedirect(self._url("changelist"))
        action = request.POST.get("action", "")
        known = self._bulk_actions(request)
        if action not in known:
            raise PermissionDenied
        cids = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        form_class = {"trim": forms.TrimForm, "delete": forms.DeleteForm}.get(action)
        form = (
            form_class(request.POST if "confirm" in request.POST else None) if form_class else None
        )
        if "confirm" in request.POST and cids and (form is None or form.is_valid()):
            run = {
                "trim": actions.trim_session,
                "compact": actions.compact_one_session,
                "delete": actions.delete_session,
            }[action]
            flag = DELETION if action == "delete" else CHANGE
            for cid in cids:
                self._run(request, cid, run, form.cleaned_data if form else {}, flag)
            return HttpResponseRedirect(self._url("changelist"))
        if form is not None and not form.is_bound:
            policy = CompactionPolicy.from_settings()
            form.initial = {"keep": policy.keep_turns, "pinned": policy.pinned}
        return self._render(
            request, "confirm.html", known[action], cids=cids, form=form, bulk_action=action
        )

    # --- helpers ------------------------------------------------------------------------

    def _act(self, request, object_id, *, permission, title, run, form_class=None, **options):
        self._require(request, permission)
        cid = unquote(object_id)
        form = form_class(_posted(request), initial=options.get("initial")) if form_class else None
        if request.method == "POST" and (form is None or form.is_valid()):
            data = form.cleaned_data if form else {}
            done = self._run(request, cid, run, data, options.get("flag", CHANGE))
            if done and options.get("flag") == DELETION:
                return HttpResponseRedirect(self._url("changelist"))
            return HttpResponseRedirect(self._url("change", cid))
        return self._render(request, "confirm.html", title, cid=cid, form=form)

    def _run(self, request, cid, run, data, flag):
        """Run one action on one session: log it and tell the operator; False when it failed."""
        try:
            change = run(cid, **data)
        except SessionNotFound:
            self.message_user(request, _("%(id)s: no such session.") % {"id": cid}, messages.ERROR)
            return False
        except StoreError as e:  # busy, undecodable (left in place), Redis unreachable
            self.message_user(request, f"{cid}: {e}", messages.ERROR)
            return False
        message = describe(change)
        _log(request, cid, flag, message)
        self.message_user(request, message, messages.SUCCESS)
        return True

    def _bulk_actions(self, request):
        allowed = {
            "trim": (self.has_trim_permission, _("Trim the selected sessions")),
            "compact": (self.has_compact_permission, _("Compact the selected sessions")),
            "delete": (self.has_delete_permission, _("Delete the selected sessions")),
        }
        return {name: label for name, (check, label) in allowed.items() if check(request)}

    def _require(self, request, permission):
        if not permission(request):
            raise PermissionDenied

    def _url(self, view, *args):
        name = f"admin:{self.opts.app_label}_{self.opts.model_name}_{view}"
        return reverse(name, args=[quote(a) for a in args], current_app=self.admin_site.name)

    def _render(self, request, template, title, **context):
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            **context,
        }
        return TemplateResponse(request, f"{TEMPLATES}/{template}", context)


class _ListLinks:
    """The list's sort, filter and page links: each keeps the rest of the query."""

    def __init__(self, request, query, page):
        self.params = request.GET.copy()
        self.query, self.page = query, page

    def with_(self, **changes):
        """This query with ``changes`` (None drops a key); any change but a page goes to page 1."""
        params = {k: v for k, v in self.params.items() if k != "p" or "p" in changes}
        params.update(changes)
        return "?" + urlencode(sorted((k, v) for k, v in params.items() if v not in (None, "")))

    def _sort(self, name):
        descending = not (self.query.sort == name and self.query.descending)
        return self.with_(sort=name, order="desc" if descending else "asc")

    @property
    def sort_size(self):
        return self._sort("size")

    @property
    def sort_turns(self):
        return self._sort("turns")

    @property
    def sort_seen(self):
        return self._sort("seen")

    @property
    def oversized(self):
        return self.with_(oversized=None if self.query.oversized else "1")

    @property
    def bots(self):
        """(bot total, link, selected) per bot_config the census counted."""
        counted = self.page.census.bots if self.page.census else []
        return [(b, self.with_(bot=b.digest or None), b.digest == self.query.bot) for b in counted]

    @property
    def all_bots(self):
        return self.with_(bot=None)

    def pages(self):
        """Page numbers to link: the first, the last, and two either side of this one."""
        shown = {1, self.page.pages, *range(self.page.page - 2, self.page.page + 3)}
        return [(n, self.with_(p=n)) for n in sorted(shown) if 1 <= n <= self.page.pages]


def _posted(request):
    # A confirm page may post no field at all (an unticked "discard"): still a bound form.
    return request.POST if request.method == "POST" else None


def _part_rows(parts):
    rows = [(_("history (turns list)"), parts.history, 0, _("%(n)s turns") % {"n": parts.turns})]
    note = _("%(plain)s as one JSON document") % {"plain": filesizeformat(parts.state_plain)}
    rows.append((_("state, as stored"), parts.state_stored, 0, note))
    for key, size in parts.state_keys:
        rows.append((key, size, 1, ""))
        if key == "record":
            rows += [(f"record.{k}", n, 2, "") for k, n in parts.record_keys]
    rows.append((_("bot_config (shared)"), parts.bot_config, 0, ""))
    return rows


def _versus_rows(result):
    rows = [(_("store.load (this layout)"), result.load.median, 0, "")]
    rows.append((_("legacy GET + json.loads"), result.legacy_json.median, 0, ""))
    if result.legacy_orjson is not None:
        rows.append((_("legacy GET + orjson.loads"), result.legacy_orjson.median, 0, ""))
    return rows


def _archive_url(model, cid):
    return (
        reverse(f"admin:sessions_app_{model}_changelist")
        + "?"
        + urlencode({"conversation_id": cid})
    )


def _log(request, cid, flag, message):
    LogEntry.objects.log_actions(
        user_id=request.user.pk,
        queryset=[ConversationSession(conversation_id=cid)],
        action_flag=flag,
        change_message=message,
        single_object=True,
    )


# --- the archive: read-only, turns never leave it through the admin ----------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False  # no COUNT(*) over millions of archived turns

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the archive is the only copy of what left Redis


@admin.register(ArchivedTurn)
class ArchivedTurnAdmin(ReadOnlyAdmin):
    list_display = ("conversation_id", "incarnation", "seq", "role", "turned_at", "archived_at")
    list_filter = ("role",)
    search_fields = ("=conversation_id",)


@admin.register(ArchivedSession)
class ArchivedSessionAdmin(ReadOnlyAdmin):
    list_display = (
        "conversation_id",
        "incarnation",
        "bot_id",
        "size",
        "next_seq",
        "last_seen_at",
        "archived_at",
    )
    search_fields = ("=conversation_id", "bot_id")
    actions = ("restore_selected",)

    @admin.display(description=gettext_lazy("size"), ordering="bytes")
    def size(self, row):
        return filesizeformat(row.bytes)

    def has_restore_permission(self, request):
        return request.user.has_perm("sessions_app.restore_archivedsession")

    @admin.action(
        description=gettext_lazy("Restore the selected sessions to Redis"), permissions=["restore"]
    )
    def restore_selected(self, request, queryset):
        if request.POST.get("post") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": _("Restore to Redis"),
                "opts": self.opts,
                "rows": queryset,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(
                request, "admin/sessions_app/archivedsession/restore_confirm.html", context
            )
        for cid, incarnation in queryset.values_list("conversation_id", "incarnation"):
            try:
                change = actions.restore_archived(cid, incarnation)
            except StoreError as e:
                self.message_user(request, f"{cid}: {e}", messages.ERROR)
                continue
            message = describe(change)
            _log(request, cid, CHANGE, message)
            self.message_user(request, message, messages.SUCCESS)
        return None
