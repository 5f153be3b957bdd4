"""The library's tests: plain pytest against a real Redis, no Django.

CONVSTORE_TEST_REDIS_URL names the Redis database the tests flush around each test (by default
database 14 of a local Redis): never one that holds data. With CONVSTORE_TEST_CLUSTER_URL (a
node of a Redis Cluster kept for the tests, e.g. `scripts/redis_cluster.py start`), every
store test runs on the cluster too, whose primaries are flushed around each test.
"""

import asyncio
import os
import threading

import pytest
import redis
import redis.cluster

from convstore import AsyncConversationStore, ConversationStore
from convstore.observe import add_observer, remove_observer

URL = os.environ.get("CONVSTORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
CLUSTER_URL = os.environ.get("CONVSTORE_TEST_CLUSTER_URL")


@pytest.fixture(
    params=[
        "single",
        pytest.param(
            "cluster",
            marks=pytest.mark.skipif(not CLUSTER_URL, reason="CONVSTORE_TEST_CLUSTER_URL unset"),
        ),
    ]
)
def backend(request):
    """Where the stores of a test keep their data: one Redis, or a Redis Cluster (not for the
    tests marked ``single_redis``, which build clients of one Redis from its URL)."""
    if request.param == "cluster" and request.node.get_closest_marker("single_redis"):
        pytest.skip("a test of one Redis")
    return request.param


def flush(client):
    if isinstance(client, redis.cluster.RedisCluster):
        client.flushdb(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    else:
        client.flushdb()


@pytest.fixture(autouse=True)
def redis_client(backend):
    if backend == "cluster":
        client = redis.cluster.RedisCluster.from_url(CLUSTER_URL)
    else:
        client = redis.Redis.from_url(URL)
    flush(client)
    yield client
    flush(client)
    client.close()


class AsyncFromThreads:
    """The async store's calls made blocking, on an event loop of its own in a thread."""

    def __init__(self, url=URL, **options):
        self.store = AsyncConversationStore.from_url(url, **options)
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
def make_store(request, backend):
    """Build a store of either kind with the given options (each test runs with both, on each
    backend)."""
    made = []
    url, cluster = (CLUSTER_URL, True) if backend == "cluster" else (URL, False)

    def make(**options):
        if request.param == "sync":
            store = ConversationStore.from_url(url, cluster=cluster, **options)
        else:
            store = AsyncFromThreads(url, cluster=cluster, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        if isinstance(store, AsyncFromThreads):
            store.close()
        else:
            store.client.close()


@pytest.fixture(params=[(), ("record",)], ids=["whole", "split"])
def store(request, make_store):
    """A store of either kind, storing ``record`` whole or split (split_keys)."""
    return make_store(split_keys=request.param)


@pytest.fixture
def records():
    """Every store call of the test, as the CallRecords an observer is handed."""
    seen = []
    add_observer(seen.append)
    yield seen
    remove_observer(seen.append)
