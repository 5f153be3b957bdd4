"""Django settings for robotperf, read from the environment.

Every value that differs per deployment comes from an environment variable with a safe
development default; the defaults run the whole stack on one machine.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ROBOTPERF_VAR_DIR", BASE_DIR / "var"))


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name, default):
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError as e:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from e


def env_list(name, default):
    """A comma-separated variable as a list, blanks dropped."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def redis_url_with_db(url, db):
    """The same Redis server as ``url``, another database number."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))


# --- Core -------------------------------------------------------------------------------
DEBUG = env_bool("DEBUG", default=True)
# With DEBUG off, SECRET_KEY, ALLOWED_HOSTS and API_TOKEN have no default: the system check
# robotperf.E003 names the one missing, so `manage.py check` (and migrate, and `make serve`)
# refuses to start rather than a server answering 400 or 500 to everything.
SECRET_KEY = os.environ.get("SECRET_KEY") or ("dev-only-insecure-secret-key" if DEBUG else "")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "django_celery_results",
    "robotperf.apps.RobotperfConfig",
    "sessions_app",
    "phonemes",
]

MIDDLEWARE = [
    # First: every request counted and timed for /metrics, whatever answers it.
    "robotperf.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Redis or the database not answering is a 503 with Retry-After, not a 500.
    "robotperf.middleware.ServiceUnavailableMiddleware",
    # Static files, before anything that reads a session or the database for them.
    "robotperf.static.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After sessions (it reads the chosen language there), before common (URL handling).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "robotperf.urls"
WSGI_APPLICATION = "robotperf.wsgi.application"
ASGI_APPLICATION = "robotperf.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "robotperf" / "templates"],  # admin/base_site.html
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The admin speaks English or Vietnamese (the robot's operators read Vietnamese); each user
# may choose, this is the default.
LANGUAGE_CODE = os.environ.get("LANGUAGE_CODE", "en-us")
LANGUAGES = [("en", "English"), ("vi", "Tiếng Việt")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
# `collectstatic` writes each file under a name with its content's hash (and a gzip copy);
# the app serves them itself (whitenoise), cached for a year since a new content is a new name.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- HTTPS behind a proxy -----------------------------------------------------------------
# The processes speak plain HTTP on BIND; TLS ends at the proxy or load balancer in front. Each
# setting is off by default (so `make serve` works over plain HTTP on loopback) and each
# `check --deploy` warning it leaves is explained in docs/OPERATIONS.md ("Deploying").
# SECURE_PROXY_SSL_HEADER names the header the proxy sets to "https" (e.g. X-Forwarded-Proto):
# only behind a proxy that always sets it, or a client could claim HTTPS.
if os.environ.get("SECURE_PROXY_SSL_HEADER"):
    _header = "HTTP_" + os.environ["SECURE_PROXY_SSL_HEADER"].upper().replace("-", "_")
    SECURE_PROXY_SSL_HEADER = (_header, "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE")
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE")
# The admin's forms posted through an HTTPS proxy: its origin, e.g. https://robotperf.example
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# --- Database: SQLite under var/ unless DATABASE_URL names another (PostgreSQL) -------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'robotperf.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while a worker archives; NORMAL syncs at checkpoints,
    # which is safe with WAL and saves an fsync per archived session.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }

# --- Redis: the cache aliases ----------------------------------------------------------
# `sessions` is the one configuration of the conversation store: codec, pool, timeouts.
# No alias pickles: anyone who can write to Redis could otherwise run code in every process
# that reads it (the `robotperf.E001` system check enforces it).
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# A node of a Redis Cluster (e.g. redis://127.0.0.1:7101): the store, the login sessions and the
# locks then live on the cluster; REDIS_URL stays Celery's broker (kombu has no cluster transport).
REDIS_CLUSTER_URL = os.environ.get("REDIS_CLUSTER_URL", "")
_STORE_REDIS_URL = REDIS_CLUSTER_URL or REDIS_URL
_REDIS_OPTIONS = {
    "CLIENT_CLASS": "django_redis.client.DefaultClient",
    **(
        {"CONNECTION_FACTORY": "robotperf.redis_cluster.ClusterConnectionFactory"}
        if REDIS_CLUSTER_URL
        else {}
    ),
    "SERIALIZER": "sessions_app.codec.OrjsonSerializer",
    "SOCKET_CONNECT_TIMEOUT": float(os.environ.get("REDIS_CONNECT_TIMEOUT", "2")),
    "SOCKET_TIMEOUT": float(os.environ.get("REDIS_SOCKET_TIMEOUT", "5")),
    "CONNECTION_POOL_KWARGS": {"max_connections": env_int("REDIS_MAX_CONNECTIONS", 50)},
}
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": _STORE_REDIS_URL,
        "KEY_PREFIX": "django",
        # Django's login sessions: its JSON contract (a datetime is a TypeError, as with
        # Django's own session serializer), not the store's (a datetime becomes a string).
        "OPTIONS": {**_REDIS_OPTIONS, "SERIALIZER": "sessions_app.codec.DjangoJSONSerializer"},
    },
    "sessions": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": _STORE_REDIS_URL,
        "OPTIONS": {
            **_REDIS_OPTIONS,
            "COMPRESSOR": "sessions_app.codec.Lz4Compressor",
            "COMPRESS_MIN_LENGTH": env_int("STORE_COMPRESS_MIN_LENGTH", 4096),
            "COMPRESS_MIN_GAIN": float(os.environ.get("STORE_COMPRESS_MIN_GAIN", "0.2")),
            "COMPRESS_LEVEL": env_int("STORE_COMPRESS_LEVEL", 0),
        },
    },
}

# Django's own login sessions live in the default cache, as JSON, never pickled.
SESSION_ENGINE = "django.contrib.sessions.backends.cache"
SESSION_CACHE_ALIAS = "default"

# --- Conversation store -----------------------------------------------------------------
ROBOTPERF_STORE = {
    "CACHE_ALIAS": "sessions",
    "KEY_PREFIX": os.environ.get("STORE_KEY_PREFIX", "rp"),
    # The key the robot wrote one JSON blob per conversation under, read transparently.
    "LEGACY_KEY_FORMAT": os.environ.get("STORE_LEGACY_KEY_FORMAT", "session:{cid}"),
    # Seconds a conversation lives after its last write; 0 keeps it until it is deleted.
    "TTL": env_int("STORE_TTL", 7 * 24 * 3600),
    "BOT_CONFIG_CACHE_SIZE": env_int("STORE_BOT_CONFIG_CACHE_SIZE", 256),
    # Whether to look for the robot's old JSON blobs: on a miss only, so they cost nothing
    # for sessions in the split layout. Turn off once `compact_sessions --migrate-legacy`
    # reports that none is left.
    "LEGACY_READS": env_bool("STORE_LEGACY_READS", default=True),
    # Whether the alias is a Redis Cluster (REDIS_CLUSTER_URL): the stores are built for one.
    "CLUSTER": bool(REDIS_CLUSTER_URL),
    # Replicas each write script waits for (WAIT, in the same round trip), and for how many
    # seconds: a write applied but not confirmed in time is NotReplicated. 0: none (replication
    # stays asynchronous: a failover may lose the last acknowledged writes).
    "WAIT_REPLICAS": env_int("STORE_WAIT_REPLICAS", 0),
    "WAIT_TIMEOUT": float(os.environ.get("STORE_WAIT_TIMEOUT", "1")),
    # State keys stored one Redis hash field per sub-key, so that a message's update_state
    # writes (and encodes) only the sub-keys it changed (merge=). Every process that reads the
    # store must run convstore layout 4 before this is set (OPERATIONS.md, "Upgrading").
    "SPLIT_KEYS": tuple(env_list("STORE_SPLIT_KEYS", "record")),
}

# --- Compaction: when a session is oversized, and what trimming it keeps ---------------------
ROBOTPERF_COMPACTION = {
    # A session is oversized above either bound (bytes in Redis, turns in Redis).
    "MAX_BYTES": env_int("COMPACTION_MAX_BYTES", 1024 * 1024),
    "MAX_TURNS": env_int("COMPACTION_MAX_TURNS", 500),
    # Compaction moves the older turns to the database, keeping the last KEEP_TURNS and
    # the first PINNED (e.g. the system turn) in Redis.
    "KEEP_TURNS": env_int("COMPACTION_KEEP_TURNS", 100),
    "PINNED": env_int("COMPACTION_PINNED", 0),
    # Seconds without a write after which a whole session moves to the database; 0 never.
    "IDLE_ARCHIVE_AFTER": env_int("COMPACTION_IDLE_ARCHIVE_AFTER", 0),
    "BATCH_SIZE": env_int("COMPACTION_BATCH_SIZE", 500),
    # The task's hard time limit, and its lock's expiry (longer, so runs never overlap).
    "TIME_LIMIT": env_int("COMPACTION_TIME_LIMIT", 10 * 60),
    "LOCK_TIMEOUT": env_int("COMPACTION_LOCK_TIMEOUT", 11 * 60),
    # One trim, compaction or restore of a session at a time: how long one may take, and how
    # long another waits for it before giving up with SessionBusy.
    "SESSION_LOCK_TIMEOUT": env_int("COMPACTION_SESSION_LOCK_TIMEOUT", 10 * 60),
    "SESSION_LOCK_WAIT": env_int("COMPACTION_SESSION_LOCK_WAIT", 10),
}

# --- The robot's JSON API (/api/sessions/) -------------------------------------------------
# It serves whole conversations: a caller must send "Authorization: Bearer <API_TOKEN>". With
# no token set it answers only while DEBUG is on (development), never in production.
ROBOTPERF_API = {"TOKEN": os.environ.get("API_TOKEN", "")}

# --- Locks: two runs of one job, or two operations on one session, never overlap ----------
ROBOTPERF_LOCKS = {
    "CACHE_ALIAS": "sessions",
    "KEY_PREFIX": os.environ.get("LOCK_KEY_PREFIX", "rp:lock:"),
}

# --- Celery -----------------------------------------------------------------------------
_redis_db = int(urlsplit(REDIS_URL).path.strip("/") or 0)
CELERY_BROKER_URL = os.environ.get(
    "CELERY_BROKER_URL", redis_url_with_db(REDIS_URL, _redis_db + 1 if _redis_db < 15 else 14)
)
# Results in the database (django-celery-results): the admin shows what each scheduled run did.
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", "django-db")
CELERY_RESULT_EXTENDED = True  # keep the task's name, so runs can be told apart
CELERY_TASK_TRACK_STARTED = True  # a run's start time, for the admin's job durations
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Phonemes ---------------------------------------------------------------------------
# The G2P service the similarity tool asks; `make run` starts the reference one on port 8001.
PHONEME_URL = os.environ.get("PHONEME_URL", "http://127.0.0.1:8001")
ROBOTPERF_PHONEMES = {
    # Part of every cache key: changing it (a new G2P model) starts a fresh cache.
    "SERVICE_VERSION": os.environ.get("PHONEME_SERVICE_VERSION", "espeak-ng"),
    "CONNECT_TIMEOUT": float(os.environ.get("PHONEME_CONNECT_TIMEOUT", "1")),
    "READ_TIMEOUT": float(os.environ.get("PHONEME_READ_TIMEOUT", "5")),
    "RETRIES": env_int("PHONEME_RETRIES", 2),
    "BACKOFF": float(os.environ.get("PHONEME_BACKOFF", "0.05")),
    "POOL_SIZE": env_int("PHONEME_POOL_SIZE", 10),
    # Seconds a request's lookups may wait for a free pooled connection when all are busy;
    # past it the API answers 503 with Retry-After.
    "QUEUE_TIMEOUT": float(os.environ.get("PHONEME_QUEUE_TIMEOUT", "10")),
    "KEEPALIVE": float(os.environ.get("PHONEME_KEEPALIVE", "30")),
    "MAX_TEXT_LENGTH": env_int("PHONEME_MAX_TEXT_LENGTH", 1000),
    # Tier 1, in each process: bounded by entries and by bytes, whichever is reached first.
    "TIER1_MAX_ENTRIES": env_int("PHONEME_TIER1_MAX_ENTRIES", 100_000),
    "TIER1_MAX_BYTES": env_int("PHONEME_TIER1_MAX_BYTES", 32 * 1024 * 1024),
    # Seconds between writes of hit counts and last-used times to the database.
    "TOUCH_INTERVAL": float(os.environ.get("PHONEME_TOUCH_INTERVAL", "60")),
    # Tier 2 eviction (the daily task and `manage.py evict_phoneme_cache`).
    "EVICT_OLDER_THAN_DAYS": env_int("PHONEME_EVICT_OLDER_THAN_DAYS", 30),
    "EVICT_MAX_ROWS": env_int("PHONEME_EVICT_MAX_ROWS", 1_000_000),
    "EVICT_MAX_BYTES": env_int("PHONEME_EVICT_MAX_BYTES", 512 * 1024 * 1024),
    "EVICT_BATCH": env_int("PHONEME_EVICT_BATCH", 1000),
}

# --- Slow calls and live latency (the admin's "Slow calls" page and dashboard) --------------
# Every process (web, Celery worker and beat, commands) logs its store calls slower than
# SLOW_CALL_THRESHOLD_MS to a stream in the store's Redis, capped at SLOW_CALL_LOG_MAXLEN
# entries, and counts every call's latency per minute there; SLOW_CALL_LOG=0 turns both off.
SLOW_CALL_LOG = env_bool("SLOW_CALL_LOG", default=True)
SLOW_CALL_THRESHOLD_MS = float(os.environ.get("SLOW_CALL_THRESHOLD_MS", "50"))
SLOW_CALL_LOG_MAXLEN = env_int("SLOW_CALL_LOG_MAXLEN", 10_000)
# Seconds the dashboard's workers panel waits for the Celery workers and the broker to answer.
ADMIN_WORKERS_TIMEOUT = float(os.environ.get("ADMIN_WORKERS_TIMEOUT", "1"))

# --- Health: /readyz asks each service with this timeout (seconds), all at once --------------
ROBOTPERF_HEALTH = {"TIMEOUT": float(os.environ.get("READYZ_TIMEOUT", "1"))}

# --- Metrics: who may read /metrics (docs/OPERATIONS.md, "Metrics") ------------------------
# A scraper sends "Authorization: Bearer <METRICS_TOKEN>", or connects from one of the allowed
# networks (by default this machine only). Under `make serve` every process writes its values
# into PROMETHEUS_MULTIPROC_DIR (an environment variable read by prometheus-client itself).
ROBOTPERF_METRICS = {
    "TOKEN": os.environ.get("METRICS_TOKEN", ""),
    "ALLOWED_NETWORKS": env_list("METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1"),
}

# --- Logging ----------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
