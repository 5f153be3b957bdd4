"""The store on a local Redis Cluster (3 primaries, 3 replicas, started for this run) against the
same store on one Redis, in the same run: a windowed load, an append, the robot's message cycle,
what ``wait_replicas=1`` costs a write, and how the keys spread over the primaries.

All on one machine (loopback): the cluster's nodes share its CPUs with the client, so the ratios
say what the routing costs, not what more machines would give. BENCH_CLUSTER_ROUNDS sets the
length (default 30 rounds of 20 calls each).
"""

import importlib.util
import os
import tempfile
from pathlib import Path

from django.conf import settings

from benchmarks.timing import measure_rounds, ratio, summary
from convstore import ConversationStore
from sessions_app.codec import codec_from_options
from sessions_app.demo import make_session, make_turn
from sessions_app.store import get_store

ROUNDS = int(os.environ.get("BENCH_CLUSTER_ROUNDS", "30"))
CALLS = 20
SPREAD = 3_000  # small sessions, for the keys per node
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "redis_cluster.py"


def _local_cluster():
    spec = importlib.util.spec_from_file_location("redis_cluster", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stores(url):
    """The benchmark's one-Redis store and its twins on the cluster, with and without WAIT."""
    alias = settings.CACHES[settings.ROBOTPERF_STORE["CACHE_ALIAS"]]
    single = get_store()
    options = {"codec": codec_from_options(alias["OPTIONS"]), "keys": single.keys}
    on_cluster = ConversationStore.from_url(url, cluster=True, **options)
    waiting = ConversationStore.from_url(url, cluster=True, wait_replicas=1, **options)
    return single, on_cluster, waiting


def _cycle(store, cid):
    def cycle():
        loaded = store.load(cid, window=20)
        store.append_turns(cid, [{"role": "user", "content": "Xin chào"}])
        store.update_state(cid, {"record": loaded["record"]}, loaded["_rev"])
        store.append_turns(cid, [{"role": "assistant", "content": "Chào em"}])

    return cycle


def run():
    local = _local_cluster()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as directory:
        cluster = local.LocalCluster(directory, local.free_port()).start()
        try:
            return _run(*_stores(cluster.url))
        finally:
            cluster.stop()


def _run(single, on_cluster, waiting):
    session = make_session(0, steps=300, turns=1_000, prefix="bench-cluster-")
    cid = session["conversation_id"]
    turn = [make_turn(0, 1_000, step=0)]
    for store in (single, on_cluster):
        store.save(session)
    calls = {
        "load_single": (lambda: single.load(cid, window=20), CALLS),
        "load_cluster": (lambda: on_cluster.load(cid, window=20), CALLS),
        "append_single": (lambda: single.append_turns(cid, turn), CALLS),
        "append_cluster": (lambda: on_cluster.append_turns(cid, turn), CALLS),
        "append_wait": (lambda: waiting.append_turns(cid, turn), CALLS),
        "cycle_single": (_cycle(single, cid), CALLS // 4),
        "cycle_cluster": (_cycle(on_cluster, cid), CALLS // 4),
    }
    rounds = measure_rounds(calls, rounds=ROUNDS)
    timings = summary(rounds)
    for store in (single, on_cluster):
        store.delete(cid)
    lines = [
        "## On a Redis Cluster\n",
        "A local cluster (3 primaries, 3 replicas, one machine) against one Redis, same run, "
        f"a 1 MB session (300 steps, 1,000 turns); {ROUNDS} rounds in alternation.\n",
        "| call | one Redis | cluster | cluster / one Redis |",
        "|---|---|---|---|",
    ]
    for name, label in (("load", "load, window 20"), ("append", "append one turn")):
        single_t, cluster_t = timings[f"{name}_single"], timings[f"{name}_cluster"]
        factor = ratio(rounds, f"{name}_cluster", f"{name}_single")
        lines.append(f"| {label} | {single_t.ms()} | {cluster_t.ms()} | {factor:.2f}x |")
    factor = ratio(rounds, "cycle_cluster", "cycle_single")
    lines.append(
        "| the robot's cycle (load w20, append, update_state, append) | "
        f"{timings['cycle_single'].ms()} | {timings['cycle_cluster'].ms()} | {factor:.2f}x |"
    )
    wait = ratio(rounds, "append_wait", "append_cluster")
    lines += [
        "",
        f"`wait_replicas=1` (WAIT 1 after the script, same pipeline): an append takes "
        f"{timings['append_wait'].ms()} against {timings['append_cluster'].ms()} without, "
        f"{wait:.2f}x.",
        "",
        _spread(on_cluster),
        "",
        "How: `python -m benchmarks cluster` (`make bench` runs it too; BENCH_CLUSTER_ROUNDS sets "
        "the rounds). A load reaches one node (its conversation's slot); an append reaches up to "
        "three in one round trip (its conversation's, the shared indexes', its bot_config's), "
        "each node one more socket to write and read.",
    ]
    return "\n".join(lines)


def _spread(store):
    """Keys per primary after SPREAD small sessions: the conversations' slots spread evenly, the
    shared keys (indexes, census) all sit on one."""
    sessions = (
        {"conversation_id": f"spread-{n}", "bot_id": 1, "history": [{"role": "user"}]}
        for n in range(SPREAD)
    )
    store.run(store.core.replace_many(sessions))
    client = store.client
    shared = client.get_node_from_key(store.keys.index_bytes).name
    sizes = {
        node.name: client.get_redis_connection(node).dbsize() for node in client.get_primaries()
    }
    rows = ", ".join(
        f"{name}: {count:,}{' (the shared keys)' if name == shared else ''}"
        for name, count in sorted(sizes.items())
    )
    return f"Keys per primary after {SPREAD:,} sessions (two keys each): {rows}."
