"""The configuration's system checks: no pickle (cache aliases, Celery on JSON), and no number
no run could use, named as its environment variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.checks import Tags, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django_redis.serializers.pickle import PickleSerializer

from robotperf.celery import app as celery_app
from sessions_app.checks import check_limits, check_no_cache_pickles

ROOT = Path(__file__).resolve().parents[2]
SAFE = "sessions_app.codec.OrjsonSerializer"
DJANGO_JSON = "sessions_app.codec.DjangoJSONSerializer"
REDIS = "django_redis.cache.RedisCache"


class SubclassedPickle(PickleSerializer):
    pass


def django_redis(serializer=None):
    options = {} if serializer is None else {"SERIALIZER": serializer}
    return {"BACKEND": REDIS, "LOCATION": "redis://127.0.0.1:1/0", "OPTIONS": options}


def flagged(caches):
    with override_settings(CACHES=caches):
        return [(e.id, e.obj) for e in check_no_cache_pickles()]


def test_the_project_settings_pickle_nothing_and_the_check_is_registered():
    serializers = {
        alias: config["OPTIONS"]["SERIALIZER"] for alias, config in settings.CACHES.items()
    }
    # The store's codec for conversations; Django's JSON contract for its login sessions.
    assert serializers == {"sessions": SAFE, "default": DJANGO_JSON}
    assert check_no_cache_pickles() == []
    with override_settings(CACHES={"default": django_redis()}):
        assert [e.id for e in run_checks(tags=[Tags.caches])] == ["robotperf.E001"]


@pytest.mark.parametrize(
    "config",
    [
        django_redis(),
        django_redis("django_redis.serializers.pickle.PickleSerializer"),
        django_redis(f"{__name__}.SubclassedPickle"),
        django_redis("no.such.Serializer"),
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://x"},
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://x",
            "OPTIONS": {"serializer": "django.core.cache.backends.redis.RedisSerializer"},
        },
        {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": "/tmp/x"},
    ],
    ids=[
        "no-serializer",
        "pickle",
        "pickle-subclass",
        "unimportable",
        "django-builtin-redis",
        "django-builtin-redis-serializer",
        "file-based",
    ],
)
def test_an_alias_that_would_pickle_is_an_error_naming_it(config):
    caches = {"default": django_redis(SAFE), "risky": config}
    assert flagged(caches) == [("robotperf.E001", "CACHES['risky']")]


def test_safe_serializers_and_in_process_caches_pass():
    caches = {
        "default": django_redis(SAFE),
        "login": django_redis(DJANGO_JSON),
        "json": django_redis("django_redis.serializers.json.JSONSerializer"),
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    assert flagged(caches) == []


def test_manage_py_check_fails_on_a_pickling_alias():
    with (
        override_settings(CACHES={**settings.CACHES, "default": django_redis()}),
        pytest.raises(
            SystemCheckError, match=r"robotperf\.E001.*'default' stores values with pickle"
        ),
    ):
        call_command("check")


def test_celery_reads_and_writes_json_only():
    assert celery_app.conf.accept_content == ["json"]
    assert celery_app.conf.task_serializer == celery_app.conf.result_serializer == "json"


# --- numbers no run could use -------------------------------------------------------------


def limit_errors(setting, **changes):
    with override_settings(**{setting: {**getattr(settings, setting), **changes}}):
        return [(e.id, e.msg) for e in check_limits()]


def test_the_project_settings_are_within_their_limits_and_the_check_is_registered():
    assert check_limits() == []
    compaction = {**settings.ROBOTPERF_COMPACTION, "KEEP_TURNS": 600}
    with override_settings(ROBOTPERF_COMPACTION=compaction):
        assert [e.id for e in run_checks()] == ["robotperf.E002"]


@pytest.mark.parametrize(
    ("setting", "name", "value", "message"),
    [
        ("ROBOTPERF_STORE", "TTL", -1, "STORE_TTL must be an integer from 0 to"),
        ("ROBOTPERF_STORE", "TTL", 10**12, "STORE_TTL must be an integer from 0 to"),
        ("ROBOTPERF_STORE", "BOT_CONFIG_CACHE_SIZE", 0, "STORE_BOT_CONFIG_CACHE_SIZE must be an"),
        ("ROBOTPERF_COMPACTION", "MAX_BYTES", 0, "COMPACTION_MAX_BYTES must be an integer from 1"),
        ("ROBOTPERF_COMPACTION", "MAX_TURNS", -5, "COMPACTION_MAX_TURNS must be an integer"),
        ("ROBOTPERF_COMPACTION", "KEEP_TURNS", 0, "COMPACTION_KEEP_TURNS must be an integer"),
        (
            "ROBOTPERF_COMPACTION",
            "KEEP_TURNS",
            501,
            "COMPACTION_KEEP_TURNS must be at most COMPACTION_MAX_TURNS (500), got 501",
        ),
        ("ROBOTPERF_COMPACTION", "PINNED", -1, "COMPACTION_PINNED must be an integer from 0"),
        ("ROBOTPERF_COMPACTION", "IDLE_ARCHIVE_AFTER", -1, "COMPACTION_IDLE_ARCHIVE_AFTER must"),
        ("ROBOTPERF_COMPACTION", "BATCH_SIZE", 0, "COMPACTION_BATCH_SIZE must be an integer"),
        ("ROBOTPERF_COMPACTION", "TIME_LIMIT", 0, "COMPACTION_TIME_LIMIT must be an integer"),
        ("ROBOTPERF_COMPACTION", "SESSION_LOCK_TIMEOUT", 0, "COMPACTION_SESSION_LOCK_TIMEOUT"),
        ("ROBOTPERF_COMPACTION", "SESSION_LOCK_WAIT", -1, "COMPACTION_SESSION_LOCK_WAIT must"),
        ("ROBOTPERF_COMPACTION", "BATCH_SIZE", 2.5, "COMPACTION_BATCH_SIZE must be an integer"),
    ],
)
def test_an_impossible_number_is_an_error_naming_its_variable(setting, name, value, message):
    [(check_id, text)] = limit_errors(setting, **{name: value})
    assert check_id == "robotperf.E002"
    assert text.startswith(message)
    assert text.endswith(f"got {value!r}")


@pytest.mark.parametrize(
    ("option", "value", "variable"),
    [
        ({"SOCKET_TIMEOUT": -1.0}, -1.0, "REDIS_SOCKET_TIMEOUT"),
        ({"SOCKET_TIMEOUT": float("nan")}, float("nan"), "REDIS_SOCKET_TIMEOUT"),
        ({"SOCKET_CONNECT_TIMEOUT": 0.0}, 0.0, "REDIS_CONNECT_TIMEOUT"),
        ({"CONNECTION_POOL_KWARGS": {"max_connections": 0}}, 0, "REDIS_MAX_CONNECTIONS"),
    ],
)
def test_an_impossible_redis_option_is_an_error_for_its_alias(option, value, variable):
    sessions = settings.CACHES["sessions"]
    broken = {**sessions, "OPTIONS": {**sessions["OPTIONS"], **option}}
    with override_settings(CACHES={**settings.CACHES, "sessions": broken}):
        [error] = check_limits()
    assert error.msg.startswith(f"{variable} must be ")
    assert error.msg.endswith(f"got {value!r}")
    assert error.obj.startswith("CACHES['sessions']['OPTIONS']")


@pytest.mark.parametrize(
    "option", [{"COMPRESS_MIN_LENGTH": -1}, {"COMPRESS_MIN_GAIN": 2.0}, {"COMPRESS_LEVEL": 99}]
)
def test_compressor_options_it_refuses_are_an_error_naming_the_variables(option):
    sessions = settings.CACHES["sessions"]
    broken = {**sessions, "OPTIONS": {**sessions["OPTIONS"], **option}}
    with override_settings(CACHES={**settings.CACHES, "sessions": broken}):
        [error] = check_limits()
    assert error.id == "robotperf.E002"
    assert "COMPRESS_MIN_LENGTH must be >= 0" in error.msg
    assert "STORE_COMPRESS_MIN_GAIN" in error.hint


def test_manage_py_refuses_to_start_with_keep_turns_above_max_turns(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "COMPACTION_KEEP_TURNS": "600",
        "STORE_TTL": "-1",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert (
        "COMPACTION_KEEP_TURNS must be at most COMPACTION_MAX_TURNS (500), got 600" in done.stderr
    )
    assert "STORE_TTL must be an integer from 0 to 1,000,000,000, got -1" in done.stderr
    assert "Traceback" not in done.stderr
