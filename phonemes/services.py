"""The phoneme similarity tool's rules: scoring two texts, and evicting tier-2 cache rows.

Admin actions, the API, the command and the task call these and nothing else.
"""

from dataclasses import asdict, dataclass
from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from rapidfuzz.distance import Levenshtein

from phonemes.cache import get_cache
from phonemes.models import PhonemeCacheEntry

# No cache row is a century old: a longer age means nothing, and a far longer one would
# put the cutoff before the first date a datetime can hold.
MAX_OLDER_THAN = timedelta(days=36_500)


@dataclass(frozen=True, slots=True)
class Similarity:
    score: float
    """1.0 for the same phonemes, towards 0.0 as more of them must be edited."""
    phonemes_1: tuple[str, ...]
    phonemes_2: tuple[str, ...]
    cached: bool
    """True when neither text needed a request to the phoneme service."""


@dataclass(frozen=True, slots=True)
class EvictReport:
    expired_rows: int
    """Rows deleted (or, in a dry run, to delete) because unused for longer than older_than."""
    lru_rows: int
    """Rows deleted, least recently used first, to get under max_rows and max_bytes."""
    deleted_bytes: int
    remaining_rows: int
    remaining_bytes: int
    dry_run: bool

    def as_dict(self):
        return asdict(self)


def phoneme_similarity(text_1: str, text_2: str, lang: str = "en") -> Similarity:
    """Normalized edit similarity (0..1) of the two texts' phoneme sequences."""
    phonemes_1, phonemes_2, cached = get_cache().get_pair(text_1, text_2, lang)
    score = Levenshtein.normalized_similarity(phonemes_1, phonemes_2)
    return Similarity(score, phonemes_1, phonemes_2, cached)


async def aphoneme_similarity(text_1: str, text_2: str, lang: str = "en") -> Similarity:
    """The async twin of ``phoneme_similarity``."""
    phonemes_1, phonemes_2, cached = await get_cache().aget_pair(text_1, text_2, lang)
    score = Levenshtein.normalized_similarity(phonemes_1, phonemes_2)
    return Similarity(score, phonemes_1, phonemes_2, cached)


def evict_stale(
    *,
    older_than: timedelta,
    max_rows: int,
    max_bytes: int,
    batch: int = 1000,
    dry_run: bool = False,
) -> EvictReport:
    """Delete rows unused for ``older_than``, then the least recently used until the table is
    under ``max_rows`` and ``max_bytes``; ``batch`` rows per statement, so no long lock."""
    if not timedelta(0) <= older_than <= MAX_OLDER_THAN:
        raise ValueError(f"older_than must be from 0 to {MAX_OLDER_THAN.days} days")
    if max_rows < 0 or max_bytes < 0 or batch < 1:
        raise ValueError("max_rows and max_bytes must be >= 0, batch >= 1")
    cutoff = timezone.now() - older_than
    entries = PhonemeCacheEntry.objects.all()
    totals = entries.aggregate(rows=Count("id"), bytes=Coalesce(Sum("size_bytes"), 0))
    rows, size = totals["rows"], totals["bytes"]
    expired_rows = deleted_bytes = 0
    for chunk in _lru_batches(entries.filter(last_used_at__lt=cutoff), batch):
        deleted = _delete(chunk, dry_run)
        expired_rows += len(deleted)
        deleted_bytes += sum(deleted.values())
    rows -= expired_rows
    size -= deleted_bytes
    lru_rows = 0
    for chunk in _lru_batches(entries.filter(last_used_at__gte=cutoff), batch):
        victims = []
        for row in chunk:
            if rows <= max_rows and size <= max_bytes:
                break
            victims.append(row)
            rows -= 1
            size -= row[2]
        deleted = _delete(victims, dry_run)
        # A victim used since it was read was kept: it still counts (the next run evicts).
        rows += len(victims) - len(deleted)
        size += sum(row[2] for row in victims) - sum(deleted.values())
        lru_rows += len(deleted)
        deleted_bytes += sum(deleted.values())
        if len(victims) < len(chunk):
            break
    return EvictReport(
        expired_rows=expired_rows,
        lru_rows=lru_rows,
        deleted_bytes=deleted_bytes,
        remaining_rows=rows,
        remaining_bytes=size,
        dry_run=dry_run,
    )


def evict_entries(*, ids) -> int:
    """Delete the given rows and drop them from this process's tier 1; returns how many."""
    entries = PhonemeCacheEntry.objects.filter(pk__in=ids)
    cache = get_cache()
    for text, lang in entries.values_list("text", "lang"):
        cache.forget(text=text, lang=lang)
    deleted, _ = entries.delete()
    return deleted


def _lru_batches(queryset, size):
    """``(id, last_used_at, size_bytes)`` of rows, least recently used first, by keyset."""
    queryset = queryset.order_by("last_used_at", "id")
    after = Q()
    while chunk := list(
        queryset.filter(after).values_list("id", "last_used_at", "size_bytes")[:size]
    ):
        yield chunk
        pk, used = chunk[-1][0], chunk[-1][1]
        after = Q(last_used_at__gt=used) | Q(last_used_at=used, id__gt=pk)


def _delete(rows, dry_run):
    """Delete ``rows`` unless used since they were read; returns {id: bytes} of those deleted."""
    if dry_run or not rows:
        return {pk: size for pk, _, size in rows}
    newest = max(used for _, used, _ in rows)
    still_idle = PhonemeCacheEntry.objects.filter(
        pk__in=[pk for pk, _, _ in rows], last_used_at__lte=newest
    )
    sizes = dict(still_idle.values_list("id", "size_bytes"))
    PhonemeCacheEntry.objects.filter(pk__in=sizes, last_used_at__lte=newest).delete()
    return sizes
