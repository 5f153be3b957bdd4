"""The phoneme tool's metrics on /metrics: lookups by the tier that answered, the service's
latency by outcome, this process's tier 1, and the tier-2 table; a real reference server."""

import asyncio

import pytest
from django.db import connection

from phonemes.cache import get_cache
from phonemes.client import PhonemeServiceError
from phonemes.models import PhonemeCacheEntry
from phonemes.services import aphoneme_similarity, evict_entries, phoneme_similarity
from tests.phonemes.conftest import dead_url
from tests.scrape import scrape, value

pytestmark = pytest.mark.django_db
LOOKUPS = "robotperf_phoneme_lookups_total"
UPSTREAM = "robotperf_phoneme_upstream_seconds_count"


def moved(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def test_each_lookup_is_counted_by_the_tier_that_answered(client, phoneme_settings):
    before = scrape(client)
    phoneme_similarity("cat", "bat")  # both asked of the service
    phoneme_similarity("cat", "bat")  # both from this process's memory
    get_cache.cache_clear()  # a new process: tier 1 empty, the rows in the database
    phoneme_similarity("cat", "dog")  # cat from the database, dog from the service
    after = scrape(client)

    assert moved(before, after, LOOKUPS, result="misses") == 3
    assert moved(before, after, LOOKUPS, result="tier1_hits") == 2
    assert moved(before, after, LOOKUPS, result="tier2_hits") == 1
    assert moved(before, after, UPSTREAM, outcome="ok") == 3


@pytest.mark.django_db(transaction=True)  # the async lookups read the rows in other threads
def test_async_lookups_are_counted_and_timed_too(client, phoneme_settings):
    before = scrape(client)
    asyncio.run(aphoneme_similarity("ship", "sheep"))
    after = scrape(client)

    assert moved(before, after, LOOKUPS, result="misses") == 2
    assert moved(before, after, UPSTREAM, outcome="ok") == 2
    assert moved(before, after, "robotperf_phoneme_upstream_seconds_sum", outcome="ok") > 0


def test_a_service_that_fails_is_timed_as_an_error(client, settings):
    settings.PHONEME_URL = dead_url()
    settings.ROBOTPERF_PHONEMES = {**settings.ROBOTPERF_PHONEMES, "BACKOFF": 0.01}
    before = scrape(client)
    with pytest.raises(PhonemeServiceError):
        phoneme_similarity("cat", "bat")
    after = scrape(client)

    assert moved(before, after, UPSTREAM, outcome="error") >= 1
    assert moved(before, after, UPSTREAM, outcome="ok") == 0


def test_tier1_and_the_table_are_measured(client, phoneme_settings):
    phoneme_similarity("red", "bed")
    tier1 = get_cache().tier1
    samples = scrape(client)

    assert value(samples, "robotperf_phoneme_tier1_entries") == len(tier1) == 2
    assert value(samples, "robotperf_phoneme_tier1_bytes") == tier1.bytes > 0
    rows = PhonemeCacheEntry.objects.all()
    assert value(samples, "robotperf_phoneme_cache_rows") == rows.count() == 2
    assert value(samples, "robotperf_phoneme_cache_bytes") == sum(r.size_bytes for r in rows)

    evict_entries(ids=list(rows.filter(text="red").values_list("id", flat=True)))
    samples = scrape(client)
    assert value(samples, "robotperf_phoneme_tier1_entries") == 1
    assert value(samples, "robotperf_phoneme_cache_rows") == 1


@pytest.mark.django_db(transaction=True)
def test_a_table_that_cannot_be_read_leaves_only_its_gauges_out(client):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE phonemes_phonemecacheentry RENAME TO gone")
    try:
        response = client.get("/metrics")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE gone RENAME TO phonemes_phonemecacheentry")
    assert response.status_code == 200
    text = response.content.decode()
    assert "# TYPE robotperf_phoneme_cache_rows gauge" in text
    assert "\nrobotperf_phoneme_cache_rows " not in text
    assert "\nrobotperf_phoneme_tier1_entries " in text
