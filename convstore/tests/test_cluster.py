"""What the stores do on a Redis Cluster beyond the calls every backend shares: requests split
by slot, scans over every primary, scripts loaded per node, replicas waited for.

The tests that take an argument ``backend`` run on one Redis and, with
CONVSTORE_TEST_CLUSTER_URL, on the cluster; the others only on the cluster.
"""

import json

import pytest
import redis.cluster

from convstore import KeyLayout, NotReplicated, StoreError
from convstore.protocol import Command, ask
from tests.conftest import CLUSTER_URL
from tests.test_store import session

on_cluster = pytest.mark.skipif(not CLUSTER_URL, reason="CONVSTORE_TEST_CLUSTER_URL unset")
KEYS = KeyLayout()


def nodes_holding(client, *keys):
    return {client.get_node_from_key(key).name for key in keys}


def test_the_shared_keys_share_one_slot():
    shared = [KEYS.index_bytes, KEYS.index_seen, KEYS.census("summary"), KEYS.census_bot("ab")]
    shared.append(KEYS.scratch("t"))

    assert len({redis.cluster.key_slot(key.encode()) for key in shared}) == 1
    assert KEYS.index_bytes == "rp:{rp}:idx:bytes"


def test_delete_removes_the_split_keys_and_the_legacy_blob(store, redis_client):
    store.save(session())
    redis_client.set("session:c1", json.dumps(session()))

    assert store.delete("c1") is True
    assert not redis_client.exists(KEYS.state("c1"), KEYS.turns("c1"), "session:c1")
    assert redis_client.zscore(KEYS.index_bytes, "c1") is None


def test_a_scan_through_the_store_finds_keys_on_every_node(store, redis_client):
    for n in range(40):
        store.save(session(f"c{n}", turns=1))

    cursor, found = 0, []
    while True:
        ((cursor, keys),) = store.run(ask([Command("scan", (cursor, KEYS.state_pattern, 7))]))
        found += keys
        if cursor == 0:
            break

    assert sorted(found) == sorted(KEYS.state(f"c{n}").encode() for n in range(40))
    if isinstance(redis_client, redis.cluster.RedisCluster):
        assert len(nodes_holding(redis_client, *found)) == 3


def test_a_write_not_confirmed_by_enough_replicas_says_it_was_applied(make_store):
    store = make_store(wait_replicas=2, wait_timeout=0.05)  # no test Redis has 2 replicas
    store_without_wait = make_store()
    store_without_wait.save(session(turns=1))

    with pytest.raises(NotReplicated, match=r"applied, but only [01] of 2 replicas") as raised:
        store.append_turns("c1", [{"role": "user", "content": "kept"}])

    assert raised.value.applied is True
    assert raised.value.result == [1]
    assert isinstance(raised.value, StoreError)
    assert store_without_wait.load("c1")["history"][-1]["content"] == "kept"


def test_reads_wait_for_no_replica(make_store):
    make_store().save(session(turns=1))

    assert make_store(wait_replicas=2, wait_timeout=0.05).load("c1")["_turns"] == 1


@on_cluster
def test_a_write_confirmed_by_its_replica_returns_as_usual(make_store, backend):
    if backend != "cluster":
        pytest.skip("the test cluster's primaries have one replica each")
    store = make_store(wait_replicas=1, wait_timeout=2)

    assert store.save(session(turns=1)) == 1
    assert store.append_turns("c1", [{"role": "user"}]) == [1]


@on_cluster
def test_a_write_spans_nodes_and_reloads_scripts_a_node_forgot(make_store, backend, redis_client):
    if backend != "cluster":
        pytest.skip("one Redis is one node")
    store = make_store()
    cids = [f"c{n}" for n in range(12)]
    for cid in cids:
        store.save(session(cid, turns=2))
    assert len(nodes_holding(redis_client, *map(KEYS.state, cids))) == 3

    for node in redis_client.get_primaries():
        redis_client.get_redis_connection(node).script_flush()
    for cid in cids:
        assert store.append_turns(cid, [{"role": "user"}]) == [2]

    sizes = dict(redis_client.zrange(KEYS.index_bytes, 0, -1, withscores=True))
    for cid in cids:
        assert sizes[cid.encode()] == int(redis_client.hget(KEYS.state(cid), "bytes"))
