"""A write is reported failed exactly when it did not happen: the script's own reply decides,
a failed index command beside it is drift (repaired by the rebuild), and a write whose answer
was lost is said to be maybe written, never sent twice."""

import threading
import time

import pytest
from redis.backoff import NoBackoff
from redis.retry import Retry

from sessions_app import maintenance
from sessions_app.store import StoreUnavailable, get_store
from tests.sessions_app.factories import make_turn, save_session
from tests.sessions_app.stores import AsyncStoreFromThreads, store_of_kind

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["sync", "async"])
def both(request):
    with store_of_kind(request.param) as store:
        yield store


def core(store):
    return store.store.core if isinstance(store, AsyncStoreFromThreads) else store.core


WRITES = {
    "append": lambda store: store.append_turns("c1", [make_turn(3)]) == [3],
    "update_state": lambda store: store.update_state("c1", {"status": "ok"}, 1) == 2,
    "save anew": lambda store: store.save({"conversation_id": "c2", "history": []}) == 1,
    "delete": lambda store: store.delete("c1") is True,
}


@pytest.mark.parametrize("write", WRITES)
def test_a_write_whose_index_command_fails_succeeds_and_counts_the_drift(both, redis_client, write):
    save_session(both, "c1", turns=3)
    # An index of the wrong type refuses every index command beside the write's script.
    redis_client.delete(both.keys.index_seen)
    redis_client.set(both.keys.index_seen, b"not a sorted set")
    drift = core(both).drift

    assert WRITES[write](both)

    assert core(both).drift > drift
    if write == "append":
        assert [t["seq"] for t in both.load("c1", window=None)["history"]] == [0, 1, 2, 3]
    if write == "update_state":
        assert both.load("c1")["status"] == "ok"


def test_a_session_created_while_its_index_commands_fail_is_found_by_the_rebuild(
    store, redis_client
):
    redis_client.set(store.keys.index_seen, b"not a sorted set")
    redis_client.set(store.keys.index_bytes, b"not a sorted set")
    save_session(store, "c1", turns=3)
    assert store.load("c1")["_turns"] == 3
    redis_client.delete(store.keys.index_seen, store.keys.index_bytes)

    counts = maintenance.rebuild_indexes(store)

    assert counts["missing"] == 1
    assert dict(maintenance.index_entries(store)) == {
        "c1": int(redis_client.hget(store.keys.state("c1"), "bytes"))
    }


@pytest.fixture
def stalled_redis(sessions_redis):
    """A Redis of the test's own, and a store that waits 0.3 s for an answer. Its options ask
    redis-py to retry three times: the store must not resend a write all the same."""
    return sessions_redis(
        SOCKET_TIMEOUT=0.3, CONNECTION_POOL_KWARGS={"retry": Retry(NoBackoff(), 3)}
    )


@pytest.fixture(params=["sync", "async"])
def stalled_store(request, stalled_redis):
    with store_of_kind(request.param) as store:
        yield store


def test_a_write_whose_answer_is_lost_is_maybe_written_and_applied_once(
    stalled_redis, stalled_store
):
    save_session(stalled_store, "c1", turns=3)
    stalled_store.append_turns("c1", [make_turn(3)])  # the script is loaded: no NOSCRIPT
    stalled_redis.pause()
    threading.Timer(1.0, stalled_redis.resume).start()

    with pytest.raises(StoreUnavailable, match="the write may have happened") as failed:
        stalled_store.append_turns("c1", [{"role": "user", "content": "once"}])

    assert failed.value.maybe_written
    time.sleep(1.2)  # the server wakes up and runs what it was sent, once
    history = stalled_store.load("c1", window=None)["history"]
    assert [turn["content"] for turn in history].count("once") == 1


def test_a_write_that_could_not_connect_did_not_happen(stalled_redis, stalled_store):
    save_session(get_store(), "c1", turns=3)
    stalled_redis.kill()

    with pytest.raises(StoreUnavailable, match="is unreachable") as failed:
        stalled_store.append_turns("c1", [make_turn(3)])

    assert not failed.value.maybe_written, failed.value
