"""The conversation store of this Django project: convstore's stores configured from settings.

`get_store()` serves sync callers (the admin, commands, Celery) on the raw client of the cache
alias named in ``ROBOTPERF_STORE``; `get_async_store()` serves asyncio callers with the same
options. Both read archived turns from the database (`archive.DatabaseArchive`).
"""

import functools

from django.conf import settings
from django.core.cache import caches
from django.core.signals import setting_changed
from django.dispatch import receiver

from convstore import (
    AsyncConversationStore,
    ConversationStore,
    CorruptSession,
    SessionBusy,
    SessionNotFound,
    StaleRevision,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from convstore.keys import KeyLayout
from sessions_app.codec import codec_from_options

__all__ = [
    "AsyncConversationStore",
    "ConversationStore",
    "CorruptSession",
    "SessionBusy",
    "SessionNotFound",
    "StaleRevision",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "get_async_store",
    "get_store",
]


def _options():
    """The alias's settings and the store's options: its cache alias is its configuration."""
    config = settings.ROBOTPERF_STORE
    # Imported here: the database archive needs Django's apps, the store itself does not.
    from sessions_app.archive import DatabaseArchive

    alias = config["CACHE_ALIAS"]
    options = {
        "keys": key_layout(),
        "ttl": config["TTL"],
        "legacy_reads": config["LEGACY_READS"],
        "archive": DatabaseArchive(),
        "bot_config_cache_size": config["BOT_CONFIG_CACHE_SIZE"],
        "wait_replicas": config["WAIT_REPLICAS"],
        "wait_timeout": config["WAIT_TIMEOUT"],
        "split_keys": config["SPLIT_KEYS"],
    }
    return alias, settings.CACHES[alias], options


def key_layout():
    """The store's key layout, from ``ROBOTPERF_STORE``."""
    config = settings.ROBOTPERF_STORE
    return KeyLayout(prefix=config["KEY_PREFIX"], legacy_format=config["LEGACY_KEY_FORMAT"])


def redis_url(cache):
    """The Redis URL of a django-redis alias's configuration (its first, if several)."""
    location = cache["LOCATION"]
    return location[0] if isinstance(location, list | tuple) else location


@functools.cache
def get_store():
    """The process's store, on the raw client of the cache alias named in ``ROBOTPERF_STORE``
    (a RedisCluster's when the alias is on a cluster)."""
    alias, cache, options = _options()
    client = caches[alias].client.get_client(write=True)
    return ConversationStore(client, codec_from_options(cache["OPTIONS"]), **options)


@functools.cache
def get_async_store():
    """The process's async store, configured like `get_store` (one client per event loop)."""
    _, cache, options = _options()
    url = redis_url(cache)
    socket = cache["OPTIONS"]
    client_options = {
        "socket_connect_timeout": socket.get("SOCKET_CONNECT_TIMEOUT"),
        "socket_timeout": socket.get("SOCKET_TIMEOUT"),
        **socket.get("CONNECTION_POOL_KWARGS", {}),
    }
    return AsyncConversationStore(
        url,
        codec_from_options(cache["OPTIONS"]),
        cluster=settings.ROBOTPERF_STORE["CLUSTER"],
        client_options=client_options,
        **options,
    )


@receiver(setting_changed)
def _reset_stores(*, setting, **kwargs):
    if setting in {"ROBOTPERF_STORE", "CACHES"}:
        get_store.cache_clear()
        get_async_store.cache_clear()
