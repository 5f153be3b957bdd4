"""Shared fixtures: the tests' own Redis database, flushed around every test."""

import uuid
from pathlib import Path

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core.cache import caches

from robotperf.celery import app
from sessions_app.store import get_store
from tests import clusters
from tests.redis_servers import RedisServer


@pytest.fixture(autouse=True)
def redis_client():
    """The raw client of the tests' Redis database, empty at the start and end of each test."""
    client = caches["sessions"].client.get_client(write=True)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def store():
    return get_store()


# kombu's Redis transport keeps a queue's bindings in these sets, and never expires them.
KOMBU_BINDINGS = ("_kombu.binding.{}", "_kombu.binding_permanent.{}")


@pytest.fixture
def celery_queue():
    """A Celery queue of this test's own, so no other run's worker takes its tasks; the bindings
    kombu declared for it are deleted from the broker afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    yield name
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        broker.delete(*(key.format(name) for key in KOMBU_BINDINGS))
    finally:
        broker.close()


@pytest.fixture
def worker(celery_queue):
    """A real Celery worker (one thread) consuming this test's own queue."""
    with start_worker(
        app, pool="threads", concurrency=1, queues=[celery_queue], perform_ping_check=False
    ) as running:
        yield running


@pytest.fixture
def sessions_redis(settings, tmp_path):
    """Start a redis-server of the test's own and point the sessions alias (the store and the
    locks) at it: ``sessions_redis(*redis_server_args, **OPTIONS)``. Stopped at the end."""
    servers = []

    def start(*args, **options):
        server = RedisServer(tmp_path, *args).start()
        servers.append(server)
        alias = settings.CACHES["sessions"]
        settings.CACHES = {
            **settings.CACHES,
            "sessions": {
                **alias,
                "LOCATION": server.url,
                "OPTIONS": {**alias["OPTIONS"], **options},
            },
        }
        return server

    yield start
    for server in servers:
        server.resume()
        server.kill()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """One local Redis Cluster (3 primaries, 3 replicas) for the run, stopped at its end."""
    cluster = clusters.start_cluster(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def on_cluster(redis_cluster, settings):
    """The cache aliases, the store and the locks on the run's cluster, empty at the start and
    end of the test: its RedisCluster client."""
    clusters.flush(redis_cluster.url)
    clusters.cluster_settings(settings, redis_cluster.url)
    yield get_store().client
    clusters.flush(redis_cluster.url)


def pytest_sessionfinish(session):
    """Django deletes the SQLite test database's file but not its WAL files (the settings turn
    WAL on): delete them too once the database is gone, so a run leaves nothing under var/."""
    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    sqlite = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
    if sqlite and name and not Path(name).exists():
        for suffix in ("-wal", "-shm"):
            Path(name + suffix).unlink(missing_ok=True)
