"""The hot path in round trips: each robot call is one batch sent to Redis, and a session in
the split layout never costs a look for a legacy blob."""

import pytest
import redis

from convstore.pipelines import SHAS
from tests.sessions_app.factories import save_session


@pytest.fixture
def batches(store, monkeypatch):
    """Every pipeline the store sends to Redis (one round trip each), as the names of its
    commands in order (a script by its name)."""
    sent = []
    execute = redis.client.Pipeline.execute
    names = {sha: name for name, sha in SHAS.items()}

    def counting(pipe, *args, **kwargs):
        sent.append(
            [
                names.get(args[1], args[1]) if args[0] == "EVALSHA" else args[0].lower()
                for args, _ in pipe.command_stack
            ]
        )
        return execute(pipe, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counting)
    return sent


def test_a_windowed_load_is_one_round_trip_without_the_legacy_key(store, batches):
    save_session(store, "c1", turns=30)
    store.load("c1")  # the shared bot_config is now cached in this process
    batches.clear()

    loaded = store.load("c1", window=20)

    assert len(loaded["history"]) == 20
    assert batches == [["hgetall", "lrange"]]


def test_a_miss_looks_for_the_legacy_blob_once(store, batches):
    assert store.load("nobody") is None
    assert batches == [["hgetall", "lrange"], ["get"]]


def test_update_state_of_a_loaded_session_is_one_round_trip(store, batches):
    save_session(store, "c1", turns=30)
    session = store.load("c1")
    batches.clear()

    store.update_state("c1", {"status": "done"}, expected_rev=session["_rev"])

    assert len(batches) == 1
    assert "update_state" in batches[0]


@pytest.mark.parametrize("change", ["merge", "whole"])
def test_a_message_on_a_loaded_split_record_is_one_round_trip(store, batches, change):
    save_session(store, "c1", turns=30)
    session = store.load("c1")
    batches.clear()
    loops = {**session["record"]["LOOP_COUNT"], "step_9999": {"count": 1}}
    turns = [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}]
    if change == "merge":
        merge, changes = {"record": {"LOOP_COUNT": loops}}, {}
    else:
        merge, changes = None, {"record": {"LOOP_COUNT": loops}}

    store.update_state("c1", changes, session["_rev"], append=turns, merge=merge)

    # The bytes this process predicted were right: no second round trip corrected the index.
    assert len(batches) == 1
    assert "update_state" in batches[0]
    assert store.client.zscore(store.keys.index_bytes, "c1") == int(
        store.client.hget(store.keys.state("c1"), "bytes")
    )


def test_appending_to_a_loaded_session_is_one_round_trip(store, batches):
    save_session(store, "c1", turns=30)
    store.load("c1")
    batches.clear()

    store.append_turns("c1", [{"role": "user", "content": "one"}])
    store.append_turns("c1", [{"role": "user", "content": "two"}])

    assert [len(batches), *map(lambda b: "append" in b, batches)] == [2, True, True]
    assert store.client.zscore(store.keys.index_bytes, "c1") == int(
        store.client.hget(store.keys.state("c1"), "bytes")
    )


def test_a_process_that_never_loaded_it_corrects_the_index_in_a_second_round_trip(store):
    save_session(store, "c1", turns=30)
    fresh = store.core.__class__(store.codec, keys=store.keys)  # another process's store
    sent = []

    def counting(operation):
        request = next(operation)
        try:
            while True:
                sent.append(request)
                request = operation.send(store.execute(request))
        except StopIteration as done:
            return done.value

    counting(fresh.update_state("c1", {"record": {"grown": "x" * 500}}, expected_rev=1))
    counting(fresh.append_turns("c1", [{"role": "user", "content": "y" * 50}]))

    assert len(sent) == 4, "each call corrects the index once: nothing was known to predict it"
    counting(fresh.append_turns("c1", [{"role": "user", "content": "z"}]))
    assert len(sent) == 5, "the append told it the next seq: one round trip from now on"
    assert store.client.zscore(store.keys.index_bytes, "c1") == int(
        store.client.hget(store.keys.state("c1"), "bytes")
    )
