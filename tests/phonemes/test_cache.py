"""The two-tier cache: normalization, tier-1 bounds, tier-2 fill, single flight, coarse hits."""

import asyncio
import threading

import pytest

from phonemes.cache import PhonemeCache
from phonemes.lru import BoundedLRU, entry_size
from phonemes.models import PhonemeCacheCounter, PhonemeCacheEntry
from phonemes.text import normalize_text


def make_cache(phoneme_client, *, timer=None, touch_interval=3600.0, max_entries=1000):
    extra = {} if timer is None else {"timer": timer}
    return PhonemeCache(
        phoneme_client,
        tier1=BoundedLRU(max_entries=max_entries, max_bytes=10**7),
        version="test",
        touch_interval=touch_interval,
        max_text_length=100,
        **extra,
    )


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class TestNormalization:
    def test_nfc_casefold_and_whitespace(self):
        decomposed = "  Cafe\u0301\tSTRASSE \n Ok "
        assert normalize_text(decomposed) == "café strasse ok"

    def test_equivalent_texts_make_one_request_and_one_row(self, cache, service, db):
        cache.get_pair("The  Cat", "the cat", "en")
        cache.get_pair("THE CAT\n", "the\u00a0cat", "en")
        assert service.phoneme_requests == 1
        assert list(PhonemeCacheEntry.objects.values_list("text", flat=True)) == ["the cat"]

    @pytest.mark.parametrize(
        ("text", "lang", "message"),
        [
            ("   ", "en", "text is empty"),
            ("x" * 101, "en", "longer than 100 characters"),
            (None, "en", "must be strings"),
            ("cat", "EN;", "language code"),
        ],
    )
    def test_bad_input_is_refused_before_any_request(
        self, phoneme_client, service, db, text, lang, message
    ):
        with pytest.raises(ValueError, match=message):
            make_cache(phoneme_client).get_pair(text, "cat", lang)
        assert service.phoneme_requests == 0


class TestTier1:
    def test_bounded_by_entries_least_recently_used_first(self):
        lru = BoundedLRU(max_entries=3, max_bytes=10**6)
        for key in "abc":
            lru.put(key, (key,))
        lru.get("a")  # now the most recent
        lru.put("d", ("d",))
        assert len(lru) == 3
        assert lru.get("b") is None
        assert [lru.get(k) for k in "acd"] == [("a",), ("c",), ("d",)]

    def test_bounded_by_bytes(self):
        value = ("k", "a", "t")
        cap = 3 * entry_size("key-0", value)
        lru = BoundedLRU(max_entries=1000, max_bytes=cap)
        for i in range(10):
            lru.put(f"key-{i}", value)
        assert len(lru) == 3
        assert lru.bytes <= cap
        assert lru.get("key-9") == value
        assert lru.get("key-6") is None

    def test_a_value_larger_than_the_cap_is_not_kept(self):
        lru = BoundedLRU(max_entries=10, max_bytes=200)
        lru.put("big", tuple(str(i) for i in range(100)))
        assert len(lru) == 0
        assert lru.bytes == 0

    def test_byte_count_stays_exact_under_threads(self):
        lru = BoundedLRU(max_entries=50, max_bytes=10**6)

        def work(n):
            for i in range(2000):
                lru.put(f"k{(i * n) % 120}", ("a",) * (i % 7))
                lru.get(f"k{i % 120}")
                lru.discard(f"k{(i + n) % 120}")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 7)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(lru) <= 50
        assert lru.bytes == sum(entry_size(k, v) for k, v in lru._data.items())


class TestTier2:
    def test_a_miss_stores_a_row_and_a_tier2_hit_fills_tier1(self, phoneme_client, service, db):
        first = make_cache(phoneme_client)
        assert first.get_pair("cat", "bat", "en") == (("k", "a", "t"), ("b", "a", "t"), False)
        row = PhonemeCacheEntry.objects.get(text="cat")
        assert (row.lang, row.service_version, row.phonemes, row.hits) == (
            "en",
            "test",
            ["k", "a", "t"],
            0,
        )
        assert row.size_bytes == len("cat") + len('["k","a","t"]')

        other_process = make_cache(phoneme_client)
        assert other_process.get_pair("cat", "bat", "en") == (
            ("k", "a", "t"),
            ("b", "a", "t"),
            True,
        )
        assert service.phoneme_requests == 2
        assert other_process.tier1.get("en\x1fcat") == ("k", "a", "t")

    def test_another_service_version_is_another_entry(self, phoneme_client, service, db):
        make_cache(phoneme_client).get_pair("cat", "cat", "en")
        newer = make_cache(phoneme_client)
        newer.version = "test-2"
        newer.get_pair("cat", "cat", "en")
        assert service.phoneme_requests == 2
        assert PhonemeCacheEntry.objects.count() == 2

    def test_hits_are_written_once_per_interval_not_per_hit(
        self, phoneme_client, db, django_assert_num_queries
    ):
        clock = FakeClock()
        cache = make_cache(phoneme_client, timer=clock, touch_interval=60)
        cache.get_pair("cat", "dog", "en")
        with django_assert_num_queries(0):
            for _ in range(5):
                assert cache.get_pair("cat", "dog", "en")[2] is True
        assert set(PhonemeCacheEntry.objects.values_list("hits", flat=True)) == {0}
        clock.now += 61
        cache.get_pair("cat", "dog", "en")
        assert set(PhonemeCacheEntry.objects.values_list("hits", flat=True)) == {6}
        counters = dict(PhonemeCacheCounter.objects.values_list("name", "value"))
        assert counters == {"tier1_hits": 12, "misses": 2}

    def test_a_tier2_hit_is_counted_on_its_row(self, phoneme_client, db):
        make_cache(phoneme_client).get_pair("cat", "dog", "en")
        cache = make_cache(phoneme_client)
        cache.get_pair("cat", "hat", "en")
        cache.flush()
        hits = dict(PhonemeCacheEntry.objects.values_list("text", "hits"))
        assert hits == {"cat": 1, "dog": 0, "hat": 0}
        counters = dict(PhonemeCacheCounter.objects.values_list("name", "value"))
        assert counters == {"tier2_hits": 1, "misses": 1}

    def test_flushes_add_to_what_earlier_flushes_and_other_processes_wrote(
        self, phoneme_client, service, db
    ):
        first, second = make_cache(phoneme_client), make_cache(phoneme_client)
        first.get_pair("cat", "dog", "en")  # two misses: rows written, no hits
        for _ in range(3):
            first.get_pair("cat", "cat", "en")
        first.flush()
        second.get_pair("cat", "cat", "en")  # a tier-2 hit, counted on the row
        second.flush()
        first.get_pair("cat", "dog", "en")
        first.flush()

        hits = dict(PhonemeCacheEntry.objects.values_list("text", "hits"))
        assert hits == {"cat": 3 * 2 + 1 + 1, "dog": 1}
        counters = dict(PhonemeCacheCounter.objects.values_list("name", "value"))
        assert counters == {"tier1_hits": 3 * 2 + 2, "tier2_hits": 1, "misses": 2}
        assert service.phoneme_requests == 2


class TestSingleFlight:
    def test_concurrent_misses_in_threads_make_one_request(
        self, phoneme_client, service, transactional_db
    ):
        service.latency = 0.2
        cache = make_cache(phoneme_client)
        start = threading.Barrier(8)
        results = []

        def compare():
            start.wait()
            results.append(cache.get_pair("single flight", "single flight", "en"))

        threads = [threading.Thread(target=compare) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert service.phoneme_requests == 1
        assert len(results) == 8
        assert len({(p1, p2) for p1, p2, _ in results}) == 1
        assert PhonemeCacheEntry.objects.count() == 1

    def test_a_failed_flight_fails_every_waiter_and_is_not_cached(
        self, phoneme_client, service, transactional_db
    ):
        service.latency = 0.2
        service.fail_remaining = 100
        cache = make_cache(phoneme_client)
        start = threading.Barrier(4)
        errors = []

        def compare():
            start.wait()
            try:
                cache.get_pair("doomed", "doomed", "en")
            except Exception as e:
                errors.append(type(e).__name__)

        threads = [threading.Thread(target=compare) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == ["PhonemeServiceError"] * 4
        assert service.phoneme_requests == 3  # one flight: the first try and two retries
        assert PhonemeCacheEntry.objects.count() == 0
        assert cache._flights == {}

    def test_concurrent_misses_in_tasks_make_one_request(
        self, phoneme_client, service, transactional_db
    ):
        service.latency = 0.1
        cache = make_cache(phoneme_client)

        async def main():
            results = await asyncio.gather(
                *(cache.aget_pair("async flight", "other text", "en") for _ in range(10))
            )
            await phoneme_client.aclose()
            return results

        results = asyncio.run(main())
        assert service.phoneme_requests == 2  # one per distinct text
        assert len({(p1, p2) for p1, p2, _ in results}) == 1
        assert PhonemeCacheEntry.objects.count() == 2

    def test_both_texts_of_a_pair_are_fetched_at_once(self, phoneme_client, service, db):
        service.latency = 0.3
        make_cache(phoneme_client).get_pair("first text", "second text", "en")
        # Fetched one after the other, they would have needed one connection.
        assert service.connections == 2
