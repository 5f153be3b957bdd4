"""No pickle in the configuration: the system check on cache aliases, and Celery on JSON."""

import pytest
from django.conf import settings
from django.core.checks import Tags, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django_redis.serializers.pickle import PickleSerializer

from robotperf.celery import app as celery_app
from sessions_app.checks import check_no_cache_pickles

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
