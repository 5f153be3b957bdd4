"""A process that looks texts up and ends without flushing its hit counts itself.

Usage: python -m tests.phonemes.exit_child DATABASE_NAME PHONEME_URL
"""

import os
import sys

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

import django
from django.conf import settings


def main(database, url):
    settings.DATABASES["default"]["NAME"] = database
    settings.PHONEME_URL = url
    settings.ROBOTPERF_PHONEMES = {**settings.ROBOTPERF_PHONEMES, "TOUCH_INTERVAL": 3600.0}
    django.setup()
    from phonemes.cache import get_cache

    cache = get_cache()
    cache.get_pair("think", "sink", "en")  # two misses
    cache.get_pair("think", "sink", "en")  # two tier-1 hits, counted in memory only
    print("looked up")


if __name__ == "__main__":
    main(*sys.argv[1:])
