"""Read-only queries about the phoneme cache, for the admin.

The hit rate counts every lookup that any process flushed: tier-1 hits, tier-2 hits and misses.
"""

from dataclasses import dataclass

from django.db.models import Count, Sum
from django.db.models.functions import Coalesce

from phonemes.models import PhonemeCacheCounter, PhonemeCacheEntry


@dataclass(frozen=True, slots=True)
class CacheSummary:
    rows: int
    bytes: int
    row_hits: int
    """Hits of the rows still in the table (every tier), as last flushed."""
    tier1_hits: int
    tier2_hits: int
    misses: int

    @property
    def lookups(self):
        return self.tier1_hits + self.tier2_hits + self.misses

    @property
    def hit_rate(self):
        """Share of lookups answered without a request, or None before the first lookup."""
        return (self.tier1_hits + self.tier2_hits) / self.lookups if self.lookups else None


def cache_summary() -> CacheSummary:
    totals = PhonemeCacheEntry.objects.aggregate(
        rows=Count("id"),
        bytes=Coalesce(Sum("size_bytes"), 0),
        row_hits=Coalesce(Sum("hits"), 0),
    )
    counters = dict(PhonemeCacheCounter.objects.values_list("name", "value"))
    return CacheSummary(
        **totals,
        tier1_hits=counters.get(PhonemeCacheCounter.TIER1_HITS, 0),
        tier2_hits=counters.get(PhonemeCacheCounter.TIER2_HITS, 0),
        misses=counters.get(PhonemeCacheCounter.MISSES, 0),
    )
