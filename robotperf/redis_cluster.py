"""The cache aliases on a Redis Cluster: a django-redis connection factory that gives
redis-py's RedisCluster clients (django-redis has none of its own).

Set by settings.py for every alias when REDIS_CLUSTER_URL names a node of the cluster. One
client per URL and options in a process, shared by its threads, as django-redis shares pools.
"""

import threading

from django_redis.pool import ConnectionFactory
from redis.cluster import RedisCluster


class ClusterConnectionFactory(ConnectionFactory):
    _clusters: dict[tuple, RedisCluster] = {}
    _lock = threading.Lock()

    def connect(self, url):
        params = self.make_connection_params(url)
        options = {
            name: params[name]
            for name in ("username", "password", "socket_timeout", "socket_connect_timeout")
            if name in params
        }
        options |= self.pool_cls_kwargs  # max_connections: per node
        key = (url, tuple(sorted(options.items())))
        with self._lock:
            client = self._clusters.get(key)
            if client is None:
                client = self._clusters[key] = RedisCluster.from_url(url, **options)
        return client

    def disconnect(self, connection):
        connection.disconnect_connection_pools()
