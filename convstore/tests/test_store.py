"""The robot's calls on both stores, against a real Redis: what a robot that installs only
this library relies on."""

import json

import pytest

from convstore import (
    LAYOUT_VERSION,
    KeyLayout,
    SessionNotFound,
    StaleRevision,
    StoreError,
    StoreUnavailable,
)

BOT_CONFIG = {"scenario": [{"step": 1, "prompt": "Hãy chào"}], "system_prompt": "Be kind."}


def session(cid="c1", turns=30):
    return {
        "conversation_id": cid,
        "bot_id": 7,
        "user_id": "u-1",
        "input_slots": {"name": "Minh"},
        "bot_config": BOT_CONFIG,
        "record": {"LOOP_COUNT": [{}], "HISTORY_QUESTION": [], "TOOL_SCORE": {}},
        "history": [{"role": "user", "content": f"turn {n}"} for n in range(turns)],
    }


def contents(loaded):
    return [turn["content"] for turn in loaded["history"]]


def test_save_then_load_the_last_window_of_turns(store):
    assert store.save(session()) == 1

    loaded = store.load("c1", window=5)

    assert contents(loaded) == [f"turn {n}" for n in range(25, 30)]
    assert [turn["seq"] for turn in loaded["history"]] == list(range(25, 30))
    assert loaded["bot_config"] == BOT_CONFIG
    assert loaded["input_slots"] == {"name": "Minh"}
    assert (loaded["_rev"], loaded["_turns"]) == (1, 30)


def test_append_then_update_state_the_robots_message_cycle(store):
    store.save(session(turns=2))
    loaded = store.load("c1", window=20)

    assert store.append_turns("c1", [{"role": "user", "content": "Xin chào"}]) == [2]
    rev = store.update_state("c1", {"record": {"LOOP_COUNT": [{"a": 1}]}}, loaded["_rev"])
    assert store.append_turns("c1", [{"role": "assistant", "content": "Chào Minh"}]) == [3]

    again = store.load("c1", window=None)
    assert rev == 2
    assert again["record"] == {"LOOP_COUNT": [{"a": 1}]}
    assert contents(again)[-2:] == ["Xin chào", "Chào Minh"]


def test_a_message_in_one_write_the_state_change_and_its_turns(store, redis_client):
    store.save(session(turns=2))
    loaded = store.load("c1", window=20)
    turns = [{"role": "user", "content": "Xin chào"}, {"role": "assistant", "content": "Chào"}]

    rev = store.update_state("c1", {"record": {"LOOP_COUNT": 3}}, loaded["_rev"], append=turns)

    again = store.load("c1", window=None)
    assert rev == again["_rev"] == 2
    assert again["record"] == {"LOOP_COUNT": 3}
    assert [(t["seq"], t["content"]) for t in again["history"][-2:]] == [
        (2, "Xin chào"),
        (3, "Chào"),
    ]
    assert again["_turns"] == store.size_breakdown("c1")["turns"] == 4
    keys = KeyLayout()
    stored_bytes = int(redis_client.hget(keys.state("c1"), "bytes"))
    assert redis_client.zscore(keys.index_bytes, "c1") == stored_bytes


def test_a_stale_message_writes_neither_its_state_nor_its_turns(store):
    store.save(session(turns=2))
    store.update_state("c1", {"user_id": "u-2"}, 1)

    with pytest.raises(StaleRevision):
        store.update_state("c1", {"user_id": "u-3"}, 1, append=[{"role": "user", "content": "x"}])

    again = store.load("c1", window=None)
    assert (again["user_id"], again["_turns"], contents(again)) == ("u-2", 2, ["turn 0", "turn 1"])


def test_a_message_on_a_legacy_blob_moves_it_and_appends(store, redis_client):
    blob = {**session(turns=1), "record": {"LOOP_COUNT": 1}}
    redis_client.set("session:old", json.dumps({**blob, "conversation_id": "old"}))
    loaded = store.load("old")

    store.update_state(
        "old", {"record": {"LOOP_COUNT": 2}}, loaded["_rev"], append=[{"role": "user"}]
    )

    again = store.load("old", window=None)
    assert again["record"] == {"LOOP_COUNT": 2}
    assert [t["seq"] for t in again["history"]] == [0, 1]
    assert redis_client.exists("session:old") == 0


def test_a_stale_revision_is_refused_and_changes_nothing(store):
    store.save(session())
    store.update_state("c1", {"user_id": "u-2"}, 1)

    with pytest.raises(StaleRevision, match="is at revision 2, not 1"):
        store.update_state("c1", {"user_id": "u-3"}, 1)

    assert store.load("c1")["user_id"] == "u-2"


def test_a_missing_conversation(store):
    assert store.load("nobody") is None
    with pytest.raises(SessionNotFound, match="'nobody' does not exist"):
        store.append_turns("nobody", [{"role": "user"}])
    assert store.delete("nobody") is False


def test_delete_and_size_breakdown(store):
    store.save(session())
    sizes = store.size_breakdown("c1")

    assert sizes["layout"] == "split"
    assert sizes["turns"] == 30
    assert sizes["bot_config"] > 0
    assert store.delete("c1") is True
    assert store.load("c1") is None


def test_a_legacy_blob_is_read_and_moved_on_its_next_write(store, redis_client):
    redis_client.set("session:old", json.dumps(session("old", turns=3)))

    loaded = store.load("old", window=None)
    store.append_turns("old", [{"role": "user", "content": "new"}])

    assert contents(loaded) == ["turn 0", "turn 1", "turn 2"]
    assert not redis_client.exists("session:old")
    assert contents(store.load("old", window=None))[-1] == "new"


def test_the_layout_version_is_in_each_conversation_it_creates(store, redis_client):
    store.save(session())

    state = redis_client.hgetall(KeyLayout().state("c1"))

    assert int(state[b"v"]) == LAYOUT_VERSION == 4
    assert len(state[b"inc"]) == 16


def test_a_load_reaching_archived_turns_needs_an_archive(store, redis_client):
    store.save(session(turns=3))
    redis_client.hset(KeyLayout().state("c1"), "archived", 2)
    redis_client.lpop(KeyLayout().turns("c1"), 2)

    with pytest.raises(StoreError, match="this store has no archive"):
        store.load("c1", window=None)


def test_an_archive_object_gives_the_turns_that_left_redis(make_store, redis_client):
    class Archive:
        def turns(self, cid, incarnation, *, from_seq):
            return [{"role": "user", "content": f"turn {n}", "seq": n} for n in (0, 1)]

        async def aturns(self, cid, incarnation, *, from_seq):
            return self.turns(cid, incarnation, from_seq=from_seq)

    store = make_store(archive=Archive())
    store.save(session(turns=3))
    redis_client.hset(KeyLayout().state("c1"), "archived", 2)
    redis_client.lpop(KeyLayout().turns("c1"), 2)

    assert contents(store.load("c1", window=None)) == ["turn 0", "turn 1", "turn 2"]


def test_an_unreachable_redis_is_store_unavailable_without_its_password(make_store):
    from convstore import ConversationStore

    down = ConversationStore.from_url(
        "redis://:secret@127.0.0.1:1/0", client_options={"socket_connect_timeout": 0.5}
    )

    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1.*unreachable") as raised:
        down.load("c1")
    assert "secret" not in str(raised.value)
