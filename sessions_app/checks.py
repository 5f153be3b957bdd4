"""System checks of the project's configuration: no cache alias may pickle what it stores
(whoever can write to a cache that pickles can run code in every process that reads from it),
and no number of the store, its Redis clients or compaction is one no run could use.
"""

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
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


# Bounds past anything a deployment means: counts and sizes (EXPIRE, ZSCAN and redis-py take
# them), and seconds (sockets, Celery, asyncio and EXPIRE take them).
MAX_COUNT, MAX_SECONDS = 2**53, 10**9
COMPACTION_LOWEST = {
    "MAX_BYTES": 1,
    "MAX_TURNS": 1,
    "KEEP_TURNS": 1,
    "PINNED": 0,
    "IDLE_ARCHIVE_AFTER": 0,
    "BATCH_SIZE": 1,
    "TIME_LIMIT": 1,
    "LOCK_TIMEOUT": 1,
    "SESSION_LOCK_TIMEOUT": 1,
    "SESSION_LOCK_WAIT": 0,
}
COMPACTION_SECONDS = {"IDLE_ARCHIVE_AFTER", "TIME_LIMIT", "LOCK_TIMEOUT", "SESSION_LOCK_TIMEOUT"}
COMPRESS_VARIABLES = "STORE_COMPRESS_MIN_LENGTH, STORE_COMPRESS_MIN_GAIN, STORE_COMPRESS_LEVEL"


def check_limits(app_configs=None, **kwargs):
    """robotperf.E002 for each number no run could use (a negative size, timeout or limit, a
    zero pool, keep_turns above max_turns...), named as the environment variable that sets it:
    refused at start, not met as a 500 or a half-done write later."""
    errors = [
        checks.Error(f"{variable} must be {rule}, got {value!r}", obj=where, id="robotperf.E002")
        for variable, where, value, rule in store_limits() + redis_limits() + observing_limits()
    ]
    return errors + compressor_errors()


def within(value, low, high, *, integer=True):
    """Whether ``value`` is a number (an int if ``integer``) from ``low`` to ``high``; NaN and
    infinities never are."""
    kinds = int if integer else int | float
    return isinstance(value, kinds) and not isinstance(value, bool) and low <= value <= high


def store_limits():
    """(variable, setting, value, rule) of each store and compaction setting it breaks."""
    store, compaction = settings.ROBOTPERF_STORE, settings.ROBOTPERF_COMPACTION
    rows = [
        ("STORE_TTL", "ROBOTPERF_STORE['TTL']", store["TTL"], 0, MAX_SECONDS),
        (
            "STORE_BOT_CONFIG_CACHE_SIZE",
            "ROBOTPERF_STORE['BOT_CONFIG_CACHE_SIZE']",
            store["BOT_CONFIG_CACHE_SIZE"],
            1,
            MAX_COUNT,
        ),
        ("STORE_WAIT_REPLICAS", "ROBOTPERF_STORE['WAIT_REPLICAS']", store["WAIT_REPLICAS"], 0, 100),
    ]
    for name, low in COMPACTION_LOWEST.items():
        high = MAX_SECONDS if name in COMPACTION_SECONDS else MAX_COUNT
        where = f"ROBOTPERF_COMPACTION[{name!r}]"
        rows.append((f"COMPACTION_{name}", where, compaction[name], low, high))
    broken = [
        (variable, where, value, f"an integer from {low} to {high:,}")
        for variable, where, value, low, high in rows
        if not within(value, low, high)
    ]
    # Between two settings, once both are possible on their own.
    keep, most = compaction["KEEP_TURNS"], compaction["MAX_TURNS"]
    if within(keep, 1, MAX_COUNT) and within(most, 1, MAX_COUNT) and keep > most:
        rule = f"at most COMPACTION_MAX_TURNS ({most})"
        broken.append(("COMPACTION_KEEP_TURNS", "ROBOTPERF_COMPACTION['KEEP_TURNS']", keep, rule))
    # (COMPACTION_LOCK_TIMEOUT against COMPACTION_TIME_LIMIT: sessions_app.tasks refuses it as
    # it is imported, which guards the Celery workers too.)
    return broken


def observing_limits():
    """The same for the slow-call log and the dashboard's workers panel."""
    rows = [
        ("SLOW_CALL_THRESHOLD_MS", settings.SLOW_CALL_THRESHOLD_MS, False, 0, MAX_SECONDS),
        ("SLOW_CALL_LOG_MAXLEN", settings.SLOW_CALL_LOG_MAXLEN, True, 1, MAX_COUNT),
        ("ADMIN_WORKERS_TIMEOUT", settings.ADMIN_WORKERS_TIMEOUT, False, 0.001, 60),
    ]
    return [
        (name, name, value, f"{'an integer' if integer else 'a number'} from {low} to {high:,}")
        for name, value, integer, low, high in rows
        if not within(value, low, high, integer=integer)
    ]


def redis_limits():
    """The same for the Redis client options of each django-redis alias (None: the default)."""
    broken = []
    for alias, config in settings.CACHES.items():
        if config.get("BACKEND") != "django_redis.cache.RedisCache":
            continue
        options = config.get("OPTIONS", {})
        pool = options.get("CONNECTION_POOL_KWARGS", {})
        where = f"CACHES[{alias!r}]['OPTIONS']"
        for variable, option, value, integer, low, high in [
            ("REDIS_CONNECT_TIMEOUT", "['SOCKET_CONNECT_TIMEOUT']",
             options.get("SOCKET_CONNECT_TIMEOUT"), False, 0.001, MAX_SECONDS),
            ("REDIS_SOCKET_TIMEOUT", "['SOCKET_TIMEOUT']",
             options.get("SOCKET_TIMEOUT"), False, 0.001, MAX_SECONDS),
            ("REDIS_MAX_CONNECTIONS", "['CONNECTION_POOL_KWARGS']['max_connections']",
             pool.get("max_connections"), True, 1, MAX_COUNT),
        ]:  # fmt: skip
            if value is not None and not within(value, low, high, integer=integer):
                kind = "an integer" if integer else "a number of seconds"
                broken.append((variable, where + option, value, f"{kind} from {low} to {high:,}"))
    return broken


def compressor_errors():
    """robotperf.E002 for an alias whose compressor refuses its options."""
    errors = []
    for alias, config in settings.CACHES.items():
        options = config.get("OPTIONS", {})
        if "COMPRESSOR" not in options:
            continue
        try:
            import_string(options["COMPRESSOR"])(options=options)
        except (ImproperlyConfigured, ImportError) as e:
            message = f"the compressor of CACHES[{alias!r}] refuses its options: {e}"
            errors.append(
                checks.Error(
                    message,
                    hint=f"set by {COMPRESS_VARIABLES}",
                    obj=f"CACHES[{alias!r}]",
                    id="robotperf.E002",
                )
            )
    return errors
