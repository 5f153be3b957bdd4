"""The library's tests: plain pytest against a real Redis, no Django.

CONVSTORE_TEST_REDIS_URL names the Redis database the tests flush around each test (by default
database 14 of a local Redis): never one that holds data.
"""

import asyncio
import os
import threading

import pytest
import redis

from convstore import AsyncConversationStore, ConversationStore

URL = os.environ.get("CONVSTORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


@pytest.fixture(autouse=True)
def redis_client():
    client = redis.Redis.from_url(URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


class AsyncFromThreads:
    """The async store's calls made blocking, on an event loop of its own in a thread."""

    def __init__(self, **options):
        self.store = AsyncConversationStore.from_url(URL, **options)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def __getattr__(self, name):
        call = getattr(self.store, name)

        def blocking(*args, **kwargs):
            future = asyncio.run_coroutine_threadsafe(call(*args, **kwargs), self.loop)
            return future.result(timeout=30)

        return blocking

    def close(self):
        asyncio.run_coroutine_threadsafe(self.store.aclose(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(params=["sync", "async"])
def make_store(request):
    """Build a store of either kind with the given options (each test runs with both)."""
    made = []

    def make(**options):
        if request.param == "sync":
            store = ConversationStore.from_url(URL, **options)
        else:
            store = AsyncFromThreads(**options)
        made.append(store)
        return store

    yield make
    for store in made:
        if isinstance(store, AsyncFromThreads):
            store.close()
        else:
            store.client.close()


@pytest.fixture
def store(make_store):
    return make_store()
