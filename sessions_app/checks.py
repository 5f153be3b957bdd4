"""System checks of the project's configuration: no cache alias may pickle what it stores.

Whoever can write to a cache that pickles can run code in every process that reads from it.
"""

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

DJANGO_REDIS_PICKLE = "django_redis.serializers.pickle.PickleSerializer"
DJANGO_PICKLE = "django.core.cache.backends.redis.RedisSerializer"
PICKLE_SERIALIZERS = (DJANGO_REDIS_PICKLE, DJANGO_PICKLE)
# Backends whose serializer is an option: (the option's name, the serializer when it is unset).
SERIALIZER_OPTION = {
    "django_redis.cache.RedisCache": ("SERIALIZER", DJANGO_REDIS_PICKLE),
    "django.core.cache.backends.redis.RedisCache": ("serializer", DJANGO_PICKLE),
}
HINT = 'use django_redis with OPTIONS["SERIALIZER"] = "sessions_app.codec.OrjsonSerializer"'
# Backends that always pickle, into a store that other processes can write to.
ALWAYS_PICKLE = {
    "django.core.cache.backends.db.DatabaseCache",
    "django.core.cache.backends.filebased.FileBasedCache",
    "django.core.cache.backends.memcached.PyMemcacheCache",
    "django.core.cache.backends.memcached.PyLibMCCache",
}


def check_no_cache_pickles(app_configs=None, **kwargs):
    """robotperf.E001 for each cache alias that would pickle its values."""
    return [
        checks.Error(
            f"the cache alias {alias!r} stores values with pickle ({why})",
            hint=HINT,
            obj=f"CACHES[{alias!r}]",
            id="robotperf.E001",
        )
        for alias, config in settings.CACHES.items()
        if (why := pickle_reason(config))
    ]


def pickle_reason(config):
    """Why a cache configuration pickles, or None when it does not."""
    backend = config.get("BACKEND", "")
    if backend in ALWAYS_PICKLE:
        return f"{backend} always pickles"
    if backend not in SERIALIZER_OPTION:
        return None
    option, default = SERIALIZER_OPTION[backend]
    serializer = config.get("OPTIONS", {}).get(option)
    if serializer is None:
        return f"no {option} option, so {default}"
    try:
        serializer = import_string(serializer) if isinstance(serializer, str) else serializer
    except ImportError:
        return f"{option} {serializer!r} cannot be imported, so it cannot be checked"
    cls = serializer if isinstance(serializer, type) else type(serializer)
    if issubclass(cls, tuple(map(import_string, PICKLE_SERIALIZERS))):
        return f"{option} is {cls.__module__}.{cls.__qualname__}"
    return None
