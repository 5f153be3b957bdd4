"""The database archive in the admin: read-only, turns never leave it through the admin; an
archived session goes back to Redis through the restore action or its page's Restore button."""

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from sessions_app import actions
from sessions_app.admin.common import describe, log_change
from sessions_app.models import ArchivedSession, ArchivedTurn
from sessions_app.store import StoreError


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
    change_form_template = "admin/sessions_app/archivedsession/change_form.html"

    @admin.display(description=gettext_lazy("size"), ordering="bytes")
    def size(self, row):
        return filesizeformat(row.bytes)

    def has_restore_permission(self, request):
        return request.user.has_perm("sessions_app.restore_archivedsession")

    def render_change_form(self, request, context, *args, **kwargs):
        context["can_restore"] = self.has_restore_permission(request)
        return super().render_change_form(request, context, *args, **kwargs)

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
            log_change(request, cid, CHANGE, message)
            self.message_user(request, message, messages.SUCCESS)
        return None
