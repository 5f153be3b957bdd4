"""Admin of the phoneme cache's tier 2: rows with their hits, last use and size, and eviction.

The change list shows totals and the hit rate over every process's flushed lookups on top.
"""

from django.contrib import admin, messages
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from phonemes import selectors, services
from phonemes.models import PhonemeCacheEntry


@admin.register(PhonemeCacheEntry)
class PhonemeCacheEntryAdmin(admin.ModelAdmin):
    list_display = ("text", "lang", "phoneme_string", "hits", "last_used_at", "size", "created_at")
    list_filter = ("lang", "service_version")
    search_fields = ("text",)
    ordering = ("-last_used_at",)
    date_hierarchy = "last_used_at"
    readonly_fields = [f.name for f in PhonemeCacheEntry._meta.fields]
    actions = ("evict_selected",)
    list_per_page = 100

    @admin.display(description=_("phonemes"))
    def phoneme_string(self, entry):
        return " ".join(entry.phonemes)

    @admin.display(description=_("size"), ordering="size_bytes")
    def size(self, entry):
        return filesizeformat(entry.size_bytes)

    @admin.action(description=_("Evict selected phoneme cache entries"), permissions=["delete"])
    def evict_selected(self, request, queryset):
        evicted = services.evict_entries(ids=list(queryset.values_list("pk", flat=True)))
        message = ngettext(
            "Evicted %(count)d phoneme cache entry.",
            "Evicted %(count)d phoneme cache entries.",
            evicted,
        )
        self.message_user(request, message % {"count": evicted}, messages.SUCCESS)

    def has_add_permission(self, request):
        # Rows are written by the cache from the service's answers, never by hand.
        return False

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "cache_summary": selectors.cache_summary()}
        return super().changelist_view(request, extra_context=extra_context)
