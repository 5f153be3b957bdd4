"""Split keys: a state key holding a dict stored one field per sub-key, and update_state's
``merge`` writing only the sub-keys named, on both stores against a real Redis."""

import json

import pytest

from convstore import CorruptSession, KeyLayout, StaleRevision

KEYS = KeyLayout()
RECORD = {
    "LOOP_COUNT": {"step_0000": {"count": 1}, "step_0001": {"count": 4}},
    "HISTORY_QUESTION": [{"step": "step_0000", "question": "Bạn tên gì?"}] * 50,
    "TOOL_SCORE": {"score": 0.5},
}


def session(cid="c1", record=RECORD):
    return {
        "conversation_id": cid,
        "bot_id": 7,
        "user_id": "u-1",
        "bot_config": {"scenario": [], "system_prompt": "Be kind."},
        "record": record,
        "history": [{"role": "user", "content": f"turn {n}"} for n in range(3)],
    }


@pytest.fixture
def split(make_store):
    return make_store(split_keys=("record",))


@pytest.fixture
def whole(make_store):
    """A store that stores every key whole: a writer from before split_keys was turned on."""
    return make_store()


def state_hash(redis_client, cid="c1"):
    return redis_client.hgetall(KEYS.state(cid))


def assert_bytes_exact(redis_client, cid="c1"):
    """The bytes field and the bytes index are the state fields' and the turns' sizes."""
    state = state_hash(redis_client, cid)
    items = redis_client.lrange(KEYS.turns(cid), 0, -1)
    stored = sum(len(v) for k, v in state.items() if k.startswith((b"s:", b"p:")))
    stored += sum(map(len, items))
    assert int(state[b"bytes"]) == stored
    assert redis_client.zscore(KEYS.index_bytes, cid) == stored


def sub_field(name):
    """The field of a sub-key of ``record`` (keys.split_field)."""
    return f"p:6:record{name}".encode()


def test_a_split_key_is_stored_one_field_per_sub_key_and_loads_as_before(split, redis_client):
    split.save(session())

    state = state_hash(redis_client)
    loaded = split.load("c1")

    assert state[b"s:record"] == b""
    assert {k for k in state if k.startswith(b"p:")} == {
        sub_field("LOOP_COUNT"),
        sub_field("HISTORY_QUESTION"),
        sub_field("TOOL_SCORE"),
    }
    assert json.loads(state[sub_field("TOOL_SCORE")]) == {"score": 0.5}
    assert loaded["record"] == RECORD
    assert int(state[b"v"]) == 4
    assert_bytes_exact(redis_client)
    sizes = split.size_breakdown("c1")
    assert sizes["record"] == sum(len(state[sub_field(n)]) for n in RECORD)
    assert set(sizes["split"]["record"]) == set(RECORD)


def test_merge_writes_only_the_sub_keys_named(split, redis_client):
    split.save(session())
    loaded = split.load("c1")
    before = state_hash(redis_client)
    loop = {**loaded["record"]["LOOP_COUNT"], "step_0001": {"count": 5}}

    rev = split.update_state(
        "c1",
        {},
        loaded["_rev"],
        append=[{"role": "assistant", "content": "Chào"}],
        merge={"record": {"LOOP_COUNT": loop}},
    )

    after = state_hash(redis_client)
    assert rev == 2
    assert after[sub_field("LOOP_COUNT")] != before[sub_field("LOOP_COUNT")]
    for name in (b"s:record", sub_field("HISTORY_QUESTION"), sub_field("TOOL_SCORE")):
        assert after[name] == before[name]
    again = split.load("c1", window=None)
    assert again["record"] == {**RECORD, "LOOP_COUNT": loop}
    assert again["history"][-1]["content"] == "Chào"
    assert_bytes_exact(redis_client)


def test_merge_adds_a_sub_key_and_an_empty_dict_reads_back(split, redis_client):
    split.save(session(record={}))
    assert state_hash(redis_client)[b"s:record"] == b""
    assert split.load("c1")["record"] == {}

    split.update_state("c1", {}, 1, merge={"record": {"TOOL_SCORE": 1}})

    assert split.load("c1")["record"] == {"TOOL_SCORE": 1}
    assert_bytes_exact(redis_client)


def test_a_stale_merge_writes_nothing(split, redis_client):
    split.save(session())
    split.update_state("c1", {"user_id": "u-2"}, 1)
    before = (state_hash(redis_client), redis_client.lrange(KEYS.turns("c1"), 0, -1))

    with pytest.raises(StaleRevision):
        split.update_state(
            "c1", {}, 1, append=[{"role": "user"}], merge={"record": {"LOOP_COUNT": {}}}
        )

    assert (state_hash(redis_client), redis_client.lrange(KEYS.turns("c1"), 0, -1)) == before
    assert_bytes_exact(redis_client)


def test_a_merge_into_a_key_stored_whole_merges_and_splits_it(split, whole, redis_client):
    whole.save(session())
    assert state_hash(redis_client)[b"s:record"] != b""

    rev = split.update_state("c1", {}, 1, merge={"record": {"TOOL_SCORE": {"score": 1}}})

    state = state_hash(redis_client)
    assert (rev, state[b"s:record"], int(state[b"v"])) == (2, b"", 4)
    assert split.load("c1")["record"] == {**RECORD, "TOOL_SCORE": {"score": 1}}
    assert_bytes_exact(redis_client)


def test_a_merge_into_a_missing_key_writes_it_split(split, whole, redis_client):
    whole.save({k: v for k, v in session().items() if k != "record"})

    split.update_state("c1", {}, 1, merge={"record": {"TOOL_SCORE": 2}})

    assert split.load("c1")["record"] == {"TOOL_SCORE": 2}
    assert_bytes_exact(redis_client)


def test_a_stale_merge_into_a_key_stored_whole_writes_nothing(split, whole, redis_client):
    whole.save(session())
    whole.update_state("c1", {"user_id": "u-2"}, 1)
    before = state_hash(redis_client)

    with pytest.raises(StaleRevision):
        split.update_state("c1", {}, 1, merge={"record": {"TOOL_SCORE": 1}})

    assert state_hash(redis_client) == before


def test_a_merge_into_a_value_that_is_no_dict_is_refused(split, whole, redis_client):
    whole.save(session(record=[1, 2]))
    before = state_hash(redis_client)

    with pytest.raises(TypeError, match=r"cannot merge into 'record'.*holds a list"):
        split.update_state("c1", {}, 1, merge={"record": {"TOOL_SCORE": 1}})

    assert state_hash(redis_client) == before


def test_a_merge_into_a_legacy_blob_moves_it_then_merges(split, redis_client):
    redis_client.set("session:old", json.dumps(session("old")))
    loaded = split.load("old")

    split.update_state("old", {}, loaded["_rev"], merge={"record": {"TOOL_SCORE": 3}})

    assert split.load("old")["record"] == {**RECORD, "TOOL_SCORE": 3}
    assert not redis_client.exists("session:old")
    assert state_hash(redis_client, "old")[b"s:record"] == b""
    assert_bytes_exact(redis_client, "old")


def test_a_first_release_doc_is_split_on_its_next_write(split, redis_client):
    split.save(session())
    key = KEYS.state("c1")
    state = {k: v for k, v in state_hash(redis_client).items() if not k.startswith((b"s:", b"p:"))}
    doc = json.dumps({"bot_id": 7, "record": RECORD}).encode()
    redis_client.delete(key)
    redis_client.hset(key, mapping={**state, b"doc": doc, b"bytes": len(doc)})

    split.update_state("c1", {}, 1, merge={"record": {"TOOL_SCORE": 4}})

    assert split.load("c1")["record"] == {**RECORD, "TOOL_SCORE": 4}
    assert state_hash(redis_client)[b"s:record"] == b""
    assert b"doc" not in state_hash(redis_client)


def test_a_whole_write_drops_the_sub_keys_it_no_longer_has(split, redis_client):
    split.save(session())
    loaded = split.load("c1")

    split.update_state("c1", {"record": {"LOOP_COUNT": {}}}, loaded["_rev"])

    assert split.load("c1")["record"] == {"LOOP_COUNT": {}}
    assert {k for k in state_hash(redis_client) if k.startswith(b"p:")} == {sub_field("LOOP_COUNT")}
    assert_bytes_exact(redis_client)


def test_a_value_that_is_no_dict_replaces_the_sub_keys(split, redis_client):
    split.save(session())

    split.update_state("c1", {"record": ["gone"]}, 1)

    state = state_hash(redis_client)
    assert not [k for k in state if k.startswith(b"p:")]
    assert split.load("c1")["record"] == ["gone"]
    assert_bytes_exact(redis_client)


def test_save_of_a_loaded_dict_drops_a_removed_sub_key(split, redis_client):
    split.save(session())
    loaded = split.load("c1")
    del loaded["record"]["HISTORY_QUESTION"]

    split.save(loaded)

    kept = {k: v for k, v in RECORD.items() if k != "HISTORY_QUESTION"}
    assert split.load("c1")["record"] == kept
    assert sub_field("HISTORY_QUESTION") not in state_hash(redis_client)
    assert_bytes_exact(redis_client)


def test_a_key_no_longer_split_is_written_whole_and_its_sub_keys_dropped(
    split, whole, redis_client
):
    split.save(session())

    whole.update_state("c1", {"record": {"TOOL_SCORE": 0}}, 1)

    state = state_hash(redis_client)
    assert not [k for k in state if k.startswith(b"p:")]
    assert json.loads(state[b"s:record"]) == {"TOOL_SCORE": 0}
    assert_bytes_exact(redis_client)


def test_sub_keys_are_named_unambiguously_and_as_json_names_them(make_store, redis_client):
    store = make_store(split_keys=("r", "r1"))
    store.save({"conversation_id": "c1", "r": {"1x": 1, 2: "two", True: 3}, "r1": {"x": 4}})

    assert store.load("c1", window=0)["r"] == {"1x": 1, "2": "two", "true": 3}
    assert store.load("c1", window=0)["r1"] == {"x": 4}
    assert_bytes_exact(redis_client)


def test_a_merge_names_a_split_key_once(split):
    split.save(session())

    with pytest.raises(ValueError, match="'user_id' is not one of the store's split_keys"):
        split.update_state("c1", {}, 1, merge={"user_id": {"a": 1}})
    with pytest.raises(ValueError, match="'record' is both in changes and in merge"):
        split.update_state("c1", {"record": {}}, 1, merge={"record": {"a": 1}})
    with pytest.raises(TypeError, match="must be a dict of sub-keys"):
        split.update_state("c1", {}, 1, merge={"record": [1]})


def test_split_keys_name_state_keys(make_store):
    with pytest.raises(ValueError, match="'history' is not a top-level state key"):
        make_store(split_keys=("history",))
    with pytest.raises(TypeError, match="not the string 'record'"):
        make_store(split_keys="record")


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        (b"p:6:recordLOOP", "the split key 'record' has sub-key fields but no marker"),
        (b"p:x:record", "not a split state field: 'p:x:record'"),
        (b"p:99:record", "not a split state field: 'p:99:record'"),
    ],
)
def test_a_split_field_without_its_key_or_a_name_loads_as_corrupt(
    whole, redis_client, field, reason
):
    whole.save(session())
    redis_client.hset(KEYS.state("c1"), field, b"1")

    with pytest.raises(CorruptSession, match=reason):
        whole.load("c1")
    assert redis_client.hget(KEYS.state("c1"), field) == b"1"
