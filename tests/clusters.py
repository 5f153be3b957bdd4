"""Local Redis Clusters for the tests (scripts/redis_cluster.py's LocalCluster, 3 primaries and
3 replicas), on loopback ports that nothing else uses, and the settings that point the cache
aliases (the store, the login sessions, the locks) at one."""

import importlib.util
import random
import socket
from pathlib import Path

import redis.cluster

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "redis_cluster.py"
_spec = importlib.util.spec_from_file_location("redis_cluster", SCRIPT)
redis_cluster = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(redis_cluster)
LocalCluster = redis_cluster.LocalCluster


def _free(port):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(nodes=6):
    """A port from which ``nodes`` ports, and their cluster bus ports (+10000), are free."""
    for _ in range(200):
        base = random.randrange(20000, 30000)
        ports = [base + i for i in range(nodes)]
        if all(_free(port) and _free(port + 10000) for port in ports):
            return base
    raise RuntimeError("no free range of loopback ports for a cluster")


def start_cluster(directory, **options):
    return LocalCluster(directory, free_base_port(), **options).start()


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
