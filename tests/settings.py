"""Test settings: the project's settings pointed at a Redis database number of the tests' own.

Tests flush that database, so it must never be the one the application uses.
"""

import os

os.environ["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# The tests' broker is the tests' own database unless TEST_CELERY_BROKER_URL names another: two
# runs on different databases never take each other's tasks, and its flush clears kombu's keys.
os.environ["CELERY_BROKER_URL"] = (
    os.environ.get("TEST_CELERY_BROKER_URL") or os.environ["REDIS_URL"]
)
os.environ.pop("CELERY_RESULT_BACKEND", None)
# The suite runs on one Redis; the tests of a cluster point the aliases at one of their own.
os.environ.pop("REDIS_CLUSTER_URL", None)

from robotperf.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Test workers take no remote control: no pidbox queue, so no bindings of one left in the broker.
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
# A log written in the background would change what the tests compare in Redis: the tests of
# the slow-call log turn it on for themselves.
SLOW_CALL_LOG = False
# Threads in the tests open their own connections: do not keep them past their use.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

# The test database is named after the Redis database, so two runs on two databases keep apart.
_db = os.environ["REDIS_URL"].rsplit("/", 1)[-1] or "0"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory: the tests that race two processes share the test database with them.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{_db}.sqlite3")}  # noqa: F405
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_robotperf_{_db}"}  # noqa: F405

# The test runner turns DEBUG off: the API token robotperf.E003 asks for then (tests of the API
# set their own), and static files by their plain names, with no collectstatic manifest.
ROBOTPERF_API = {"TOKEN": "test-api-token"}
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Every test Client builds the middleware anew: whitenoise looks files up per request instead of
# scanning STATIC_ROOT and every app's static files each time (as it does once per production
# worker).
WHITENOISE_AUTOREFRESH = True
