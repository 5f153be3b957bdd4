"""Test settings: the project's settings pointed at a Redis database number of the tests' own.

Tests flush that database, so it must never be the one the application uses.
"""

import os

os.environ["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.pop("CELERY_BROKER_URL", None)
os.environ.pop("CELERY_RESULT_BACKEND", None)

from robotperf.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Threads in the tests open their own connections: do not keep them past their use.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
