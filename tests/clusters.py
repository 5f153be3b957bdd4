"""Local Redis Clusters for the tests (scripts/redis_cluster.py's LocalCluster, 3 primaries and
3 replicas), on loopback ports that nothing else uses, and the settings that point the cache
aliases (the store, the login sessions, the locks) at one."""

import importlib.util
from pathlib import Path

import redis.cluster

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "redis_cluster.py"
_spec = importlib.util.spec_from_file_location("redis_cluster", SCRIPT)
redis_cluster = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(redis_cluster)
LocalCluster = redis_cluster.LocalCluster


def start_cluster(directory, **options):
    return LocalCluster(directory, redis_cluster.free_port(), **options).start()


def cluster_settings(settings, url):
    """Point the cache aliases and the store at the cluster that ``url`` is a node of."""
    factory = {"CONNECTION_FACTORY": "robotperf.redis_cluster.ClusterConnectionFactory"}
    settings.CACHES = {
        name: {**alias, "LOCATION": url, "OPTIONS": {**alias["OPTIONS"], **factory}}
        for name, alias in settings.CACHES.items()
    }
    settings.ROBOTPERF_STORE = {**settings.ROBOTPERF_STORE, "CLUSTER": True}


def flush(url):
    client = redis.cluster.RedisCluster.from_url(url)
    try:
        client.flushdb(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    finally:
        client.close()
