"""The process-wide phoneme cache writes its hit counts without waiting for another lookup:
a background thread once the touch interval is over, and the process's exit."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from phonemes.cache import get_cache
from phonemes.models import PhonemeCacheCounter

ROOT = Path(__file__).resolve().parents[2]


def counters():
    return dict(PhonemeCacheCounter.objects.values_list("name", "value"))


@pytest.mark.django_db(transaction=True)
def test_counts_are_written_after_the_interval_with_no_lookup_after(phoneme_settings):
    phoneme_settings.ROBOTPERF_PHONEMES = {
        **phoneme_settings.ROBOTPERF_PHONEMES,
        "TOUCH_INTERVAL": 0.2,
    }
    cache = get_cache()
    cache.get_pair("think", "sink", "en")
    cache.get_pair("think", "sink", "en")
    deadline = time.monotonic() + 15
    while counters().get("tier1_hits") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert counters() == {"misses": 2, "tier1_hits": 2}
    assert not cache.has_counts()


@pytest.mark.django_db(transaction=True)
def test_counts_not_yet_written_survive_the_process_exit(phoneme_server):
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.phonemes.exit_child",
            connection.settings_dict["NAME"],
            phoneme_server.url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    assert "looked up" in child.stdout
    assert counters() == {"misses": 2, "tier1_hits": 2}
