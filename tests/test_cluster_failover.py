"""The failover drill: sync and async clients append turns while a primary of a local Redis
Cluster is killed (``kill -9``), or a replica takes over by CLUSTER FAILOVER.

What is guaranteed, and asserted: no turn is ever stored twice (a write is never resent), every
client is back within 10 s of the cluster being ok again, and with ``wait_replicas=1`` no
acknowledged turn is lost. Without it, replication is asynchronous and a killed primary may take
acknowledged turns with it: those are counted and printed (``-s`` shows them), not asserted.
"""

import asyncio
import subprocess
import threading
import time

import pytest

from convstore import AsyncConversationStore, ConversationStore, NotReplicated, StoreUnavailable
from tests.clusters import start_cluster

CONVERSATIONS = [f"drill-{n}" for n in range(12)]
BACK_WITHIN = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A cluster of this module's own: its nodes are killed."""
    cluster = start_cluster(tmp_path_factory.mktemp("drill"))
    yield cluster
    cluster.stop()


class Writer:
    """Appends numbered turns round the conversations until stopped; never retries a write."""

    def __init__(self, name):
        self.name = name
        self.acked, self.unconfirmed, self.failed = {}, set(), []
        self.stop = threading.Event()

    def outcome(self, cid, n, call):
        try:
            call()
        except NotReplicated:
            self.unconfirmed.add((cid, n))  # applied on the primary, not yet on a replica
        except StoreUnavailable as e:
            self.failed.append((time.monotonic(), e))
            time.sleep(0.01)
        else:
            self.acked[cid, n] = time.monotonic()

    def turns(self):
        n = 0
        while not self.stop.is_set():
            cid = CONVERSATIONS[n % len(CONVERSATIONS)]
            yield cid, n, [{"role": "user", "writer": self.name, "n": n}]
            n += 1


def run_sync(store, writer):
    for cid, n, turns in writer.turns():
        writer.outcome(cid, n, lambda: store.append_turns(cid, turns))  # noqa: B023


def run_async(store, writer):
    async def main():
        try:
            for cid, n, turns in writer.turns():
                try:
                    await store.append_turns(cid, turns)
                except NotReplicated:
                    writer.unconfirmed.add((cid, n))
                except StoreUnavailable as e:
                    writer.failed.append((time.monotonic(), e))
                    await asyncio.sleep(0.01)
                else:
                    writer.acked[cid, n] = time.monotonic()
        finally:
            await store.aclose()

    asyncio.run(main())


def drill(cluster, disrupt, **options):
    """Writers running before, during and after ``disrupt()``: (writers, when the cluster was
    ok again, the stored turns by (writer, n) with their count)."""
    sync_store = ConversationStore.from_url(cluster.url, cluster=True, **options)
    async_store = AsyncConversationStore.from_url(cluster.url, cluster=True, **options)
    for cid in CONVERSATIONS:
        sync_store.save({"conversation_id": cid, "history": []})
    writers = [Writer("sync"), Writer("async")]
    threads = [
        threading.Thread(target=run_sync, args=(sync_store, writers[0])),
        threading.Thread(target=run_async, args=(async_store, writers[1])),
    ]
    for thread in threads:
        thread.start()
    time.sleep(1)
    disrupt()
    cluster.wait_ok(timeout=60)
    ok_at = time.monotonic()
    time.sleep(3)
    for writer in writers:
        writer.stop.set()
    for thread in threads:
        thread.join(timeout=30)
    stored = {}
    for cid in CONVERSATIONS:
        for turn in sync_store.load(cid, window=None)["history"]:
            key = (turn["writer"], (cid, turn["n"]))
            stored[key] = stored.get(key, 0) + 1
    sync_store.client.close()
    return writers, ok_at, stored


def assert_back_and_never_twice(writers, ok_at, stored):
    assert all(count == 1 for count in stored.values()), "a turn was stored twice"
    for writer in writers:
        late = [at for at, _ in writer.failed if at > ok_at + BACK_WITHIN]
        assert not late, f"{writer.name} still failing {late[-1] - ok_at:.1f} s after recovery"
        assert max(writer.acked.values()) > ok_at, f"{writer.name} never wrote again"


def lost(writers, stored):
    return {
        writer.name: [key for key in writer.acked if (writer.name, key) not in stored]
        for writer in writers
    }


def primary_of(cluster, store_url, cid):
    store = ConversationStore.from_url(store_url, cluster=True)
    try:
        return store.client.get_node_from_key(store.keys.state(cid)).port
    finally:
        store.client.close()


@pytest.mark.parametrize("wait_replicas", [0, 1])
def test_a_primary_killed_during_appends(cluster, wait_replicas):
    victim = primary_of(cluster, cluster.url, CONVERSATIONS[0])

    def kill():
        cluster.kill_node(victim)
        time.sleep(0.5)
        cluster.wait_ok(timeout=60)  # the replica took over: bring the old primary back
        cluster.start_node(victim)  # as its replica, so that WAIT 1 can be satisfied again

    options = {"wait_replicas": wait_replicas, "wait_timeout": 0.5} if wait_replicas else {}
    writers, ok_at, stored = drill(cluster, kill, **options)

    assert_back_and_never_twice(writers, ok_at, stored)
    losses = lost(writers, stored)
    if wait_replicas:
        assert losses == {"sync": [], "async": []}
    acked = sum(len(writer.acked) for writer in writers)
    failed = sum(len(writer.failed) for writer in writers)
    maybe = sum(e.maybe_written for writer in writers for _, e in writer.failed)
    last = max((at for writer in writers for at, _ in writer.failed), default=ok_at) - ok_at
    print(
        f"\nkill -9, wait_replicas={wait_replicas}: {acked} turns acknowledged, "
        f"{sum(map(len, losses.values()))} of them lost; {failed} writes failed "
        f"({maybe} maybe written), "
        f"{sum(len(w.unconfirmed) for w in writers)} applied but not confirmed; "
        f"the last failure {last:+.2f} s from the cluster being ok"
    )


def test_a_replica_taking_over_by_cluster_failover(cluster):
    primary = primary_of(cluster, cluster.url, CONVERSATIONS[0])
    replica = cluster.replica_of(primary)

    def failover():
        command = ["redis-cli", "-p", str(replica), "CLUSTER", "FAILOVER"]
        subprocess.run(command, check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while primary in cluster.primaries() and time.monotonic() < deadline:
            time.sleep(0.1)

    writers, ok_at, stored = drill(cluster, failover)

    assert_back_and_never_twice(writers, ok_at, stored)
    # A manual failover waits for the replica to catch up: nothing acknowledged is lost.
    assert lost(writers, stored) == {"sync": [], "async": []}
