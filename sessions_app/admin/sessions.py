"""The sessions in Redis in the admin: a size dashboard, a list and a detail page, a load
profile, and confirm-then-POST actions (trim, compact, delete, restore).

Every view calls one selector or service; pages read Redis through the index ZSETs.
"""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, DELETION
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.views.decorators.clickjacking import xframe_options_sameorigin

from sessions_app import actions, charts, forms, jobs, profiling, selectors, slow_calls, tasks
from sessions_app import workers as celery_workers
from sessions_app.admin.common import describe, log_change
from sessions_app.admin.links import ListLinks
from sessions_app.compaction import CompactionPolicy
from sessions_app.models import ConversationSession
from sessions_app.store import SessionNotFound, StoreError

TEMPLATES = "admin/sessions_app/conversationsession"

# The admin index links to the dashboard (a documented AdminSite attribute; no custom site).
admin.site.index_template = "admin/sessions_app/index.html"


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

    def has_restore_permission(self, request):
        # Restoring is the archive's permission: it is the archived session that goes back.
        return request.user.has_perm("sessions_app.restore_archivedsession")

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
            path(
                "dashboard/workers/",
                xframe_options_sameorigin(view(self.workers_view)),
                name=f"{name}_workers",
            ),
            path("slow-calls/", view(self.slow_calls_view), name=f"{name}_slow_calls"),
            path("compact-now/", view(self.compact_now_view), name=f"{name}_compact_now"),
            path("bulk/", view(self.bulk_view), name=f"{name}_bulk"),
            path("<path:object_id>/trim/", view(self.trim_view), name=f"{name}_trim"),
            path("<path:object_id>/compact/", view(self.compact_view), name=f"{name}_compact"),
            path("<path:object_id>/profile/", view(self.profile_view), name=f"{name}_profile"),
            path("<path:object_id>/restore/", view(self.restore_view), name=f"{name}_restore"),
            *super().get_urls(),  # list, change (the detail), delete and history: below
        ]

    # --- pages ------------------------------------------------------------------------

    def dashboard_view(self, request):
        self._require(request, self.has_view_permission)
        data = selectors.dashboard(CompactionPolicy.from_settings())
        queued = request.GET.get("task", "")
        return self._render(
            request,
            "dashboard.html",
            _("Session sizes"),
            data=data,
            histogram=charts.histogram(data.histogram),
            latency=charts.latency(data.latency),
            policy=CompactionPolicy.from_settings(),
            can_compact=self.has_compact_permission(request),
            queued=queued and jobs.queued_task(queued),
            health=data,
        )

    def workers_view(self, request):
        """The dashboard's workers panel, a page of its own in a frame of the dashboard: the
        broadcast waits for its timeout, and the dashboard need not."""
        self._require(request, self.has_view_permission)
        context = {"workers": celery_workers.workers_status()}
        return TemplateResponse(request, f"{TEMPLATES}/workers.html", context)

    def slow_calls_view(self, request):
        self._require(request, self.has_view_permission)
        form = forms.SlowCallQueryForm(request.GET)
        filters = form.filters()
        error = ""
        try:
            calls = slow_calls.slow_calls(**filters)
        except StoreError as e:  # its key holds another type
            calls, error = [], str(e)
        return self._render(
            request,
            "slow_calls.html",
            _("Slow calls"),
            form=form,
            filters=filters,
            calls=calls,
            error=error,
            shown=slow_calls.SHOWN,
            threshold_ms=settings.SLOW_CALL_THRESHOLD_MS,
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
            links=ListLinks(request, query, page),
            health=page,
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self._require(request, self.has_view_permission)
        cid = unquote(object_id)
        try:
            detail = selectors.session_detail(cid)
        except SessionNotFound:
            return self._missing(request, cid)
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
            can_restore=self.has_restore_permission(request),
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
                return self._missing(request, cid)
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
            show=lambda cid: {"size": selectors.session_size(cid), "policy": policy},
        )

    def compact_view(self, request, object_id):
        policy = CompactionPolicy.from_settings()
        return self._act(
            request,
            object_id,
            permission=self.has_compact_permission,
            title=_("Compact"),
            run=actions.compact_one_session,
            show=lambda cid: {"plan": selectors.compaction_plan(policy, [cid]), "policy": policy},
        )

    def restore_view(self, request, object_id):
        incarnation = request.POST.get("incarnation") or None
        return self._act(
            request,
            object_id,
            permission=self.has_restore_permission,
            title=_("Restore to Redis"),
            run=lambda cid: actions.restore_archived(cid, incarnation),
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
            return HttpResponseRedirect(
                self._url("dashboard") + "?" + urlencode({"task": queued.id})
            )
        policy = CompactionPolicy.from_settings()
        return self._render(
            request,
            "confirm.html",
            _("Compact oversized sessions now"),
            plan=selectors.compaction_plan(policy),
            policy=policy,
        )

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
        shown = options["show"](cid) if "show" in options else {}
        return self._render(request, "confirm.html", title, cid=cid, form=form, **shown)

    def _missing(self, request, cid):
        """A conversation neither Redis nor the archive knows: back to the list, saying so."""
        message = _("No conversation %(id)s in Redis or the archive.") % {"id": cid}
        self.message_user(request, message, messages.ERROR)
        return HttpResponseRedirect(self._url("changelist"))

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
        log_change(request, cid, flag, message)
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


def _posted(request):
    # A confirm page may post no field at all (an unticked "discard"): still a bound form.
    return request.POST if request.method == "POST" else None


def _part_rows(parts):
    rows = [(_("history (turns list)"), parts.history, 0, _("%(n)s turns") % {"n": parts.turns})]
    note = _("%(plain)s as one JSON document") % {"plain": filesizeformat(parts.state_plain)}
    rows.append((_("state, as stored"), parts.state_stored, 0, note))
    # A key's stored size may be compressed; the keys of a record stored whole have no stored
    # size of their own: each row says which it is.
    for key, size in parts.state_keys:
        rows.append((key, size, 1, _stored_note(parts.state_keys_raw.get(key, size), size)))
        if key != "record":
            continue
        for sub, n in parts.record_keys:
            raw = parts.record_keys_raw.get(sub)
            note = _("as JSON") if raw is None else _stored_note(raw, n)
            rows.append((f"record.{sub}", n, 2, note))
    rows.append((_("bot_config (shared)"), parts.bot_config, 0, ""))
    return rows


def _stored_note(raw, size):
    if raw != size:
        return _("stored, compressed; %(raw)s as JSON") % {"raw": filesizeformat(raw)}
    return _("stored, as JSON")


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
