"""The similarity rules on real phonemes, and tier-2 eviction by age, count and bytes."""

import asyncio
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from phonemes import services
from phonemes.cache import get_cache
from phonemes.client import PhonemeServiceError, get_client
from phonemes.models import PhonemeCacheEntry, entry_digest
from phonemes.services import (
    aphoneme_similarity,
    evict_entries,
    evict_stale,
    phoneme_similarity,
)
from tests.phonemes.conftest import dead_url

pytestmark = pytest.mark.django_db


class TestPhonemeSimilarity:
    def test_identical_texts_score_one(self, phoneme_settings):
        result = phoneme_similarity("the cat sat on the mat", "The cat  sat on the mat")
        assert result.score == 1.0
        assert result.phonemes_1 == result.phonemes_2

    def test_one_phoneme_apart_scores_in_between(self, phoneme_settings):
        result = phoneme_similarity("cat", "bat")
        assert result.phonemes_1 == ("k", "a", "t")
        assert result.phonemes_2 == ("b", "a", "t")
        assert result.score == pytest.approx(2 / 3)

    def test_unrelated_texts_score_low(self, phoneme_settings):
        assert phoneme_similarity("cat", "quantum physics").score < 0.2

    def test_cached_is_false_until_both_texts_are_cached(self, phoneme_settings, service):
        assert phoneme_similarity("cat", "bat").cached is False
        assert phoneme_similarity("bat", "cat").cached is True
        assert phoneme_similarity("cat", "hat").cached is False
        assert service.phoneme_requests == 3

    def test_other_languages_are_cached_apart(self, phoneme_settings, service):
        english = phoneme_similarity("hello", "hello", lang="en")
        french = phoneme_similarity("hello", "hello", lang="fr")
        assert english.phonemes_1 != french.phonemes_1
        assert service.phoneme_requests == 2

    def test_service_down_raises_phoneme_service_error(self, settings):
        settings.PHONEME_URL = dead_url()
        settings.ROBOTPERF_PHONEMES = {**settings.ROBOTPERF_PHONEMES, "BACKOFF": 0.01}
        with pytest.raises(PhonemeServiceError, match=re.escape(settings.PHONEME_URL)):
            phoneme_similarity("cat", "bat")
        get_client().close()

    @pytest.mark.django_db(transaction=True)
    def test_async_twin_gives_the_same_answer(self, phoneme_settings):
        async def main():
            result = await aphoneme_similarity("cat", "bat")
            await get_client().aclose()
            return result

        result = asyncio.run(main())
        assert result.score == pytest.approx(2 / 3)
        assert result.cached is False
        assert phoneme_similarity("cat", "bat").cached is True


def make_entry(text, *, days_ago, size=100, hits=0):
    used = timezone.now() - timedelta(days=days_ago)
    return PhonemeCacheEntry.objects.create(
        digest=entry_digest(text=text, lang="en", version="test"),
        text=text,
        lang="en",
        service_version="test",
        phonemes=list(text),
        hits=hits,
        last_used_at=used,
        size_bytes=size,
    )


def remaining():
    return sorted(PhonemeCacheEntry.objects.values_list("text", flat=True))


def used_between_selection_and_delete(monkeypatch, text):
    """Make ``text`` used (as a hit flushed by another process would) right after eviction
    has read it as a candidate and before it deletes; returns the texts so refreshed."""
    select = services._lru_batches
    refreshed = []

    def select_then_use(queryset, size):
        for chunk in select(queryset, size):
            entry = PhonemeCacheEntry.objects.get(text=text)
            if entry.pk in {pk for pk, _, _ in chunk} and not refreshed:
                PhonemeCacheEntry.objects.filter(pk=entry.pk).update(last_used_at=timezone.now())
                refreshed.append(text)
            yield chunk

    monkeypatch.setattr(services, "_lru_batches", select_then_use)
    return refreshed


class TestEvictStale:
    LIMITS = {"older_than": timedelta(days=30), "max_rows": 1000, "max_bytes": 10**9}

    def test_rows_unused_for_longer_than_the_ttl_go(self):
        for days, text in [(1, "fresh"), (29, "old-ish"), (31, "stale"), (90, "ancient")]:
            make_entry(text, days_ago=days)
        report = evict_stale(**self.LIMITS)
        assert remaining() == ["fresh", "old-ish"]
        assert (report.expired_rows, report.lru_rows, report.deleted_bytes) == (2, 0, 200)
        assert (report.remaining_rows, report.remaining_bytes) == (2, 200)

    def test_least_recently_used_go_until_under_max_rows(self):
        for days in range(10):
            make_entry(f"t{days}", days_ago=days)
        report = evict_stale(**{**self.LIMITS, "max_rows": 3}, batch=4)
        assert remaining() == ["t0", "t1", "t2"]
        assert (report.expired_rows, report.lru_rows, report.remaining_rows) == (0, 7, 3)

    def test_least_recently_used_go_until_under_max_bytes(self):
        for days in range(6):
            make_entry(f"t{days}", days_ago=days, size=100 * (days + 1))
        # Newest first the sizes are 100, 200, 300, 400...: the first three fit in 650 bytes.
        report = evict_stale(**{**self.LIMITS, "max_bytes": 650}, batch=2)
        assert remaining() == ["t0", "t1", "t2"]
        assert report.remaining_bytes == 600
        assert report.deleted_bytes == 400 + 500 + 600

    def test_age_then_count_then_bytes_together(self):
        for days in range(8):
            make_entry(f"t{days}", days_ago=days * 10)
        report = evict_stale(older_than=timedelta(days=45), max_rows=4, max_bytes=250, batch=1)
        assert remaining() == ["t0", "t1"]
        assert (report.expired_rows, report.lru_rows) == (3, 3)

    def test_dry_run_reports_the_same_and_deletes_nothing(self):
        for days in range(10):
            make_entry(f"t{days}", days_ago=days * 10)
        limits = {"older_than": timedelta(days=55), "max_rows": 3, "max_bytes": 10**9}
        dry = evict_stale(**limits, batch=2, dry_run=True)
        assert len(remaining()) == 10
        real = evict_stale(**limits, batch=2)
        assert dry.dry_run
        assert not real.dry_run
        assert (
            (dry.expired_rows, dry.lru_rows, dry.deleted_bytes, dry.remaining_rows)
            == (
                real.expired_rows,
                real.lru_rows,
                real.deleted_bytes,
                real.remaining_rows,
            )
            == (4, 3, 700, 3)
        )
        assert remaining() == ["t0", "t1", "t2"]

    def test_a_second_run_finds_nothing_to_do(self):
        for days in range(5):
            make_entry(f"t{days}", days_ago=days * 20)
        evict_stale(**{**self.LIMITS, "max_rows": 2})
        again = evict_stale(**{**self.LIMITS, "max_rows": 2})
        assert (again.expired_rows, again.lru_rows, again.deleted_bytes) == (0, 0, 0)
        assert remaining() == ["t0", "t1"]

    def test_a_row_used_after_it_was_picked_as_expired_is_kept(self, monkeypatch):
        make_entry("fresh", days_ago=1)
        make_entry("stale", days_ago=40, size=300)
        picked = used_between_selection_and_delete(monkeypatch, "stale")
        report = evict_stale(**self.LIMITS)
        assert picked == ["stale"]
        assert remaining() == ["fresh", "stale"]
        assert (report.expired_rows, report.lru_rows, report.deleted_bytes) == (0, 0, 0)
        assert (report.remaining_rows, report.remaining_bytes) == (2, 400)

    def test_a_row_used_after_it_was_picked_as_least_recent_is_kept(self, monkeypatch):
        for days in range(1, 6):
            make_entry(f"t{days}", days_ago=days, size=10 * days)
        picked = used_between_selection_and_delete(monkeypatch, "t5")
        report = evict_stale(**{**self.LIMITS, "max_rows": 2}, batch=10)
        assert picked == ["t5"]
        assert remaining() == ["t1", "t2", "t5"]
        assert (report.expired_rows, report.lru_rows, report.deleted_bytes) == (0, 2, 40 + 30)
        assert (report.remaining_rows, report.remaining_bytes) == (3, 10 + 20 + 50)

    @pytest.mark.parametrize(
        ("bad", "message"),
        [
            ({"max_rows": -1}, ">= 0"),
            ({"max_bytes": -5}, ">= 0"),
            ({"older_than": timedelta(days=-1)}, "from 0 to 36500 days"),
            ({"older_than": timedelta.max}, "from 0 to 36500 days"),
        ],
    )
    def test_impossible_limits_are_refused(self, bad, message):
        make_entry("kept", days_ago=400)
        with pytest.raises(ValueError, match=message):
            evict_stale(**{**self.LIMITS, **bad})
        assert remaining() == ["kept"]


def test_evict_entries_drops_rows_and_this_process_tier1(phoneme_settings, service):
    phoneme_similarity("cat", "bat")
    cat = PhonemeCacheEntry.objects.get(text="cat")
    assert evict_entries(ids=[cat.pk]) == 1
    assert remaining() == ["bat"]
    assert get_cache().tier1.get("en\x1fcat") is None
    assert phoneme_similarity("cat", "bat").cached is False
    assert service.phoneme_requests == 3
