"""Tier 2 of the phoneme cache: one row per normalized text, language and service version.

Plus the process counters of cache hits and misses, added up here so the admin can show a hit rate.
"""

import hashlib

from django.db import models
from django.utils.translation import gettext_lazy as _


def entry_digest(*, text, lang, version):
    """The unique key of a row: a digest, because a long text cannot be a unique index."""
    return hashlib.sha256(f"{version}\x1f{lang}\x1f{text}".encode()).hexdigest()


class PhonemeCacheEntry(models.Model):
    digest = models.CharField(max_length=64, unique=True, editable=False)
    text = models.TextField(
        _("text"), help_text=_("Normalized: NFC, case-folded, whitespace collapsed.")
    )
    lang = models.CharField(_("language"), max_length=32)
    service_version = models.CharField(_("service version"), max_length=64)
    phonemes = models.JSONField(_("phonemes"))
    hits = models.PositiveBigIntegerField(_("hits"), default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used at"))
    size_bytes = models.PositiveIntegerField(_("size (bytes)"))

    class Meta:
        verbose_name = _("phoneme cache entry")
        verbose_name_plural = _("phoneme cache entries")
        # Eviction walks rows by last use, oldest first.
        indexes = [models.Index(fields=["last_used_at", "id"], name="phonemes_lru_idx")]

    def __str__(self):
        return f"{self.text} [{self.lang}]"


class PhonemeCacheCounter(models.Model):
    """A running total of lookups of one kind, summed over every process that flushed."""

    TIER1_HITS = "tier1_hits"
    TIER2_HITS = "tier2_hits"
    MISSES = "misses"
    NAMES = (TIER1_HITS, TIER2_HITS, MISSES)

    name = models.CharField(max_length=32, unique=True)
    value = models.PositiveBigIntegerField(default=0)

    def __str__(self):
        return f"{self.name} = {self.value}"
