"""The conversation store against the tests' real Redis database: every test runs against the
sync store and the async one (driven by an event loop of its own, see stores.py)."""

import asyncio
import json
import signal
import threading
import time

import pytest
from django.conf import settings

from convstore import keys
from convstore.codec import CodecError
from convstore.state_fields import is_state_field
from sessions_app import maintenance, trimming
from sessions_app.services import trim_history
from sessions_app.store import (
    AsyncConversationStore,
    ConversationStore,
    CorruptSession,
    SessionNotFound,
    StaleRevision,
    StoreUnavailable,
    get_store,
)
from tests.redis_servers import free_port
from tests.sessions_app.factories import redis_contents, stored_bytes
from tests.sessions_app.stores import store_of_kind


@pytest.fixture(params=["sync", "async"])
def store(request):
    with store_of_kind(request.param) as store:
        yield store


SCENARIO = {
    "scenario": [
        {"step": i, "prompt": f"Hãy nói câu số {i}", "expected": f"answer {i}"} for i in range(5)
    ],
    "system_prompt": "You are a friendly English tutor for Vietnamese children.",
    "generation_params": {"temperature": 0.3},
}


def make_session(cid="c1", turns=30, bot_config=SCENARIO, **extra):
    return {
        "conversation_id": cid,
        "bot_id": 7,
        "user_id": "u-1",
        "input_slots": {"name": "Minh", 1: "one"},
        "bot_config": bot_config,
        "record": {"LOOP_COUNT": [{} for _ in range(5)], "HISTORY_QUESTION": [], "TOOL_SCORE": {}},
        "history": [
            {"role": "user" if i % 2 else "assistant", "content": f"turn {i}"} for i in range(turns)
        ],
        **extra,
    }


def contents(session):
    return [turn["content"] for turn in session["history"]]


class TestSaveAndLoad:
    def test_load_returns_the_legacy_shape_with_the_last_window_turns(self, store):
        session = make_session(extra_key={"kept": True})
        assert store.save(session) == 1
        loaded = store.load("c1", window=20)
        assert loaded["bot_config"] == SCENARIO
        assert loaded["input_slots"] == {"name": "Minh", "1": "one"}
        assert loaded["record"] == session["record"]
        assert loaded["extra_key"] == {"kept": True}
        assert contents(loaded) == [f"turn {i}" for i in range(10, 30)]
        assert [t["seq"] for t in loaded["history"]] == list(range(10, 30))
        assert loaded["_rev"] == 1
        assert loaded["_turns"] == 30

    @pytest.mark.parametrize(
        ("window", "expected"),
        [
            (0, []),
            (1, [29]),
            (20, list(range(10, 30))),
            (100, list(range(30))),
            (None, list(range(30))),
        ],
    )
    def test_windows(self, store, window, expected):
        store.save(make_session())
        assert [t["seq"] for t in store.load("c1", window=window)["history"]] == expected

    @pytest.mark.parametrize("window", [-1, 2.5, "20"])
    def test_a_bad_window_is_refused(self, store, window):
        with pytest.raises(ValueError, match="window"):
            store.load("c1", window=window)

    @pytest.mark.parametrize("cid", ["", None, "a{b}", 42])
    def test_a_bad_conversation_id_is_refused(self, store, cid):
        with pytest.raises(ValueError, match="conversation_id"):
            store.load(cid)

    def test_missing_conversation_loads_as_none(self, store):
        assert store.load("nope") is None

    def test_a_session_without_bot_config_keeps_its_shape(self, store):
        session = make_session(bot_config=None)
        del session["bot_config"]
        store.save(session)
        assert "bot_config" not in store.load("c1")

    def test_saving_a_windowed_load_appends_only_new_turns_and_keeps_the_rest(self, store):
        store.save(make_session())
        loaded = store.load("c1", window=5)
        loaded["history"].append({"role": "user", "content": "new turn"})
        loaded["user_id"] = "u-2"
        assert store.save(loaded) == 2
        full = store.load("c1", window=None)
        assert contents(full) == [f"turn {i}" for i in range(30)] + ["new turn"]
        assert full["user_id"] == "u-2"
        assert full["history"][-1]["seq"] == 30

    def test_saving_a_stale_load_is_refused(self, store):
        store.save(make_session())
        first, second = store.load("c1"), store.load("c1")
        first["user_id"] = "first"
        store.save(first)
        second["user_id"] = "second"
        with pytest.raises(StaleRevision, match="is at revision 2, not 1"):
            store.save(second)
        assert store.load("c1")["user_id"] == "first"

    def test_replacing_a_session_never_reuses_sequence_numbers(self, store):
        store.save(make_session(turns=3))
        assert store.save(make_session(turns=2)) == 2
        assert [t["seq"] for t in store.load("c1")["history"]] == [3, 4]


class TestAppendTurns:
    def test_append_returns_consecutive_sequence_numbers(self, store):
        store.save(make_session(turns=3))
        assert store.append_turns(
            "c1", [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
        ) == [3, 4]
        loaded = store.load("c1", window=2)
        assert contents(loaded) == ["a", "b"]
        assert loaded["_turns"] == 5
        assert loaded["_rev"] == 1, "appending turns is not a state write"

    def test_append_to_a_missing_session_raises(self, store):
        with pytest.raises(SessionNotFound, match="'nope' does not exist"):
            store.append_turns("nope", [{"role": "user"}])

    def test_a_turn_must_be_a_dict(self, store):
        store.save(make_session())
        with pytest.raises(TypeError, match="dict"):
            store.append_turns("c1", ["just text"])

    def test_an_unencodable_turn_is_refused_and_nothing_is_written(self, store):
        store.save(make_session(turns=1))
        with pytest.raises(CodecError, match="set"):
            store.append_turns("c1", [{"role": "user"}, {"bad": {1, 2}}])
        assert store.load("c1")["_turns"] == 1

    def test_concurrent_appenders_lose_nothing_and_keep_order(self, store):
        store.save(make_session(turns=0))
        returned = {}

        def appender(worker):
            returned[worker] = [
                store.append_turns("c1", [{"worker": worker, "n": n}])[0] for n in range(50)
            ]

        threads = [threading.Thread(target=appender, args=(w,)) for w in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        history = store.load("c1", window=None)["history"]
        assert [t["seq"] for t in history] == list(range(300))
        assert sorted(s for seqs in returned.values() for s in seqs) == list(range(300))
        for worker, seqs in returned.items():
            mine = [t for t in history if t["worker"] == worker]
            assert [t["n"] for t in mine] == list(range(50))
            assert [t["seq"] for t in mine] == seqs


class TestUpdateState:
    def test_update_applies_changes_and_bumps_the_revision(self, store):
        store.save(make_session())
        assert (
            store.update_state("c1", {"record": {"LOOP_COUNT": [1]}, "new": 1}, expected_rev=1) == 2
        )
        loaded = store.load("c1")
        assert loaded["record"] == {"LOOP_COUNT": [1]}
        assert loaded["new"] == 1
        assert loaded["_rev"] == 2
        assert len(loaded["history"]) == 20

    def test_a_stale_revision_is_refused_and_nothing_changes(self, store):
        store.save(make_session())
        store.update_state("c1", {"user_id": "winner"}, expected_rev=1)
        with pytest.raises(StaleRevision) as raised:
            store.update_state("c1", {"user_id": "loser"}, expected_rev=1)
        assert (raised.value.expected, raised.value.actual) == (1, 2)
        assert store.load("c1")["user_id"] == "winner"

    def test_concurrent_updates_from_one_revision_let_exactly_one_win(self, store):
        store.save(make_session())
        outcomes = []
        barrier = threading.Barrier(8)

        def writer(n):
            barrier.wait()
            try:
                store.update_state("c1", {"user_id": f"w{n}"}, expected_rev=1)
                outcomes.append(("ok", n))
            except StaleRevision:
                outcomes.append(("stale", n))

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [n for outcome, n in outcomes if outcome == "ok"]
        assert len(winners) == 1
        assert store.load("c1")["user_id"] == f"w{winners[0]}"

    def test_changing_the_bot_config_stores_a_new_shared_config(self, store, redis_client):
        store.save(make_session())
        new_config = {**SCENARIO, "system_prompt": "Be brief."}
        store.update_state("c1", {"bot_config": new_config}, expected_rev=1)
        assert store.load("c1")["bot_config"] == new_config
        assert len(redis_client.keys(store.keys.bot_config("*"))) == 2

    @pytest.mark.parametrize(
        ("changes", "error"),
        [({"history": []}, "append_turns"), ({"conversation_id": "other"}, "cannot be changed")],
    )
    def test_history_and_identity_are_not_state(self, store, changes, error):
        store.save(make_session())
        with pytest.raises(ValueError, match=error):
            store.update_state("c1", changes, expected_rev=1)

    def test_update_of_a_missing_session_raises(self, store):
        with pytest.raises(SessionNotFound, match="'nope' does not exist"):
            store.update_state("nope", {"a": 1}, expected_rev=0)


class TestLayout:
    def test_keys_share_the_conversation_hash_tag(self, store, redis_client):
        store.save(make_session())
        conversation_keys = {k.decode() for k in redis_client.keys("*{c1}*")}
        assert conversation_keys == {"rp:conv:{c1}:state", "rp:conv:{c1}:turns"}
        assert set(redis_client.hkeys("rp:conv:{c1}:state")) == {
            b"rev",
            b"seq",
            b"inc",
            b"v",
            b"cfg",
            b"archived",
            b"bytes",
            *(b"s:" + key for key in (b"conversation_id", b"bot_id", b"user_id")),
            b"s:input_slots",
            b"s:record",
            *(keys.split_field("record", sub).encode() for sub in make_session()["record"]),
        }

    def test_bot_config_is_stored_once_for_sessions_of_one_bot(self, store, redis_client):
        store.save(make_session("c1"))
        store.save(make_session("c2"))
        assert len(redis_client.keys(store.keys.bot_config("*"))) == 1
        assert store.load("c1")["bot_config"] == store.load("c2")["bot_config"] == SCENARIO

    def test_the_state_holds_neither_history_nor_bot_config(self, store, redis_client):
        store.save(make_session())
        fields = redis_client.hkeys("rp:conv:{c1}:state")
        assert b"s:history" not in fields
        assert b"s:bot_config" not in fields
        # record is a split key (STORE_SPLIT_KEYS): a marker, and one field per sub-key.
        assert redis_client.hget("rp:conv:{c1}:state", "s:record") == keys.SPLIT_MARKER
        for sub, value in make_session()["record"].items():
            stored = redis_client.hget("rp:conv:{c1}:state", keys.split_field("record", sub))
            assert store.codec.decode(stored) == value

    def test_every_write_sets_the_ttl_on_all_keys(self, store, redis_client):
        store.save(make_session())
        cfg_key = store.keys.bot_config(redis_client.hget("rp:conv:{c1}:state", "cfg").decode())
        keys = ["rp:conv:{c1}:state", "rp:conv:{c1}:turns", cfg_key]
        for key in keys:
            redis_client.expire(key, 10)
        store.append_turns("c1", [{"role": "user"}])
        assert all(redis_client.ttl(key) > 10 for key in keys)
        assert all(redis_client.ttl(key) <= store.ttl for key in keys)
        for key in keys:
            redis_client.expire(key, 10)
        store.update_state("c1", {"a": 1}, expected_rev=1)
        assert all(redis_client.ttl(key) > 10 for key in keys)

    def test_indexes_follow_save_append_and_delete(self, store, redis_client):
        store.save(make_session())
        stored = redis_client.hget("rp:conv:{c1}:state", "bytes")
        assert redis_client.zscore(store.keys.index_bytes, "c1") == int(stored)
        seen = redis_client.zscore(store.keys.index_seen, "c1")
        store.append_turns("c1", [{"role": "user", "content": "x" * 500}])
        grown = redis_client.zscore(store.keys.index_bytes, "c1")
        assert grown > int(stored) + 500
        assert grown == int(redis_client.hget("rp:conv:{c1}:state", "bytes"))
        assert redis_client.zscore(store.keys.index_seen, "c1") >= seen
        assert store.delete("c1") is True
        assert redis_client.zscore(store.keys.index_bytes, "c1") is None
        assert redis_client.zscore(store.keys.index_seen, "c1") is None
        assert store.load("c1") is None
        assert store.delete("c1") is False

    def test_bytes_index_matches_what_redis_holds(self, store, redis_client):
        store.save(make_session(turns=50))
        store.update_state("c1", {"record": {"big": "y" * 1000}}, expected_rev=1)
        state = redis_client.hgetall("rp:conv:{c1}:state")
        doc_len = sum(len(value) for name, value in state.items() if is_state_field(name))
        turns_len = sum(len(item) for item in redis_client.lrange("rp:conv:{c1}:turns", 0, -1))
        assert redis_client.zscore(store.keys.index_bytes, "c1") == doc_len + turns_len

    def test_size_breakdown(self, store):
        store.save(make_session(turns=40))
        sizes = store.size_breakdown("c1")
        assert sizes["layout"] == "split"
        assert sizes["turns"] == sizes["total_turns"] == 40
        assert sizes["history"] > 40 * len(b'0|{"role":"user","content":"turn 0"}') - 40
        assert 0 < sizes["record"] < sizes["state"]
        assert sizes["bot_config"] > 0
        assert 0 < sizes["ttl"] <= store.ttl
        with pytest.raises(SessionNotFound, match="'nope' does not exist"):
            store.size_breakdown("nope")


class TestLegacy:
    def write_legacy(self, redis_client, store, session):
        redis_client.set(store.keys.legacy(session["conversation_id"]), json.dumps(session))

    def test_legacy_blob_is_read_transparently(self, store, redis_client):
        session = make_session("old")
        session["record"]["TOOL_SCORE"] = {"score": float("nan")}
        self.write_legacy(redis_client, store, session)
        loaded = store.load("old", window=3)
        assert contents(loaded) == ["turn 27", "turn 28", "turn 29"]
        assert [t["seq"] for t in loaded["history"]] == [27, 28, 29]
        assert loaded["bot_config"] == SCENARIO
        assert (loaded["_rev"], loaded["_turns"]) == (0, 30)
        assert store.size_breakdown("old")["layout"] == "legacy"

    def test_first_append_moves_it_to_the_split_layout_without_loss(self, store, redis_client):
        self.write_legacy(redis_client, store, make_session("old"))
        assert store.append_turns("old", [{"role": "user", "content": "after"}]) == [30]
        assert redis_client.exists(store.keys.legacy("old")) == 0
        full = store.load("old", window=None)
        assert contents(full) == [f"turn {i}" for i in range(30)] + ["after"]
        assert full["bot_config"] == SCENARIO
        assert store.size_breakdown("old")["layout"] == "split"

    def test_saving_a_whole_session_replaces_the_legacy_blob(self, store, redis_client):
        self.write_legacy(redis_client, store, make_session("old", turns=5))
        assert store.save(make_session("old", turns=2)) == 1
        assert redis_client.exists(store.keys.legacy("old")) == 0
        assert contents(store.load("old", window=None)) == ["turn 0", "turn 1"]

    def test_update_with_the_revision_the_legacy_load_gave(self, store, redis_client):
        self.write_legacy(redis_client, store, make_session("old"))
        rev = store.load("old")["_rev"]
        assert store.update_state("old", {"user_id": "moved"}, expected_rev=rev) == rev + 1
        assert store.load("old", window=None)["user_id"] == "moved"
        assert len(store.load("old", window=None)["history"]) == 30

    def test_saving_a_loaded_legacy_session(self, store, redis_client):
        self.write_legacy(redis_client, store, make_session("old"))
        loaded = store.load("old", window=2)
        loaded["history"].append({"role": "user", "content": "new"})
        store.save(loaded)
        assert len(store.load("old", window=None)["history"]) == 31


class TestErrors:
    def test_a_corrupt_state_doc_names_the_key_and_stays_in_place(self, store, redis_client):
        store.save(make_session())
        redis_client.hset("rp:conv:{c1}:state", "doc", b"\x00garbage")
        with pytest.raises(CorruptSession, match=r"rp:conv:\{c1\}:state"):
            store.load("c1")
        assert redis_client.hget("rp:conv:{c1}:state", "doc") == b"\x00garbage"

    def test_a_corrupt_turn_is_a_corrupt_session_naming_the_turns_key(self, store, redis_client):
        store.save(make_session(turns=2))
        redis_client.rpush("rp:conv:{c1}:turns", b"2|{broken")
        with pytest.raises(CorruptSession, match=r"rp:conv:\{c1\}:turns"):
            store.load("c1")

    def test_a_corrupt_compressed_value_is_a_corrupt_session(self, store, redis_client):
        store.save(make_session())
        redis_client.hset("rp:conv:{c1}:state", "doc", b"\x28\xb5\x2f\xfdnot a frame")
        with pytest.raises(CorruptSession, match="corrupt compressed frame"):
            store.load("c1")

    def test_a_corrupt_legacy_blob_is_a_corrupt_session(self, store, redis_client):
        redis_client.set(store.keys.legacy("old"), b"{'python': 'repr'}")
        with pytest.raises(CorruptSession, match="session:old"):
            store.load("old")
        with pytest.raises(CorruptSession, match="session:old"):
            store.append_turns("old", [{"role": "user"}])
        assert redis_client.get(store.keys.legacy("old")) == b"{'python': 'repr'}"

    def test_a_missing_shared_bot_config_is_reported(self, store, redis_client):
        store.save(make_session("lonely", bot_config={"scenario": ["only mine"]}))
        redis_client.delete(*redis_client.keys(store.keys.bot_config("*")))
        with pytest.raises(CorruptSession, match="bot_config"):
            store.load("lonely")

    def test_redis_down_is_the_stores_error_with_the_url_and_no_password(self):
        down = ConversationStore.from_url(
            "redis://:hunter2@127.0.0.1:1/0", client_options={"socket_connect_timeout": 0.5}
        )
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1") as raised:
            down.load("c1")
        assert "hunter2" not in str(raised.value)
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1"):
            down.append_turns("c1", [{"role": "user"}])


STATE, TURNS = "rp:conv:{c1}:state", "rp:conv:{c1}:turns"


def every_key(client):
    """Every key's contents but the last-write times and the shared bot_configs: a refused
    write still counts as activity, and may have stored its (content-addressed) bot_config."""
    return {
        key: value
        for key, value in redis_contents(client).items()
        if key != b"rp:{rp}:idx:seen" and not key.startswith(b"rp:botcfg:")
    }


class TestHostileValues:
    """Keys of the wrong type, fields that are not numbers, values orjson cannot hold."""

    CALLS = {
        "load": lambda store: store.load("c1"),
        "load all": lambda store: store.load("c1", window=None),
        "save": lambda store: store.save(make_session()),
        "append_turns": lambda store: store.append_turns("c1", [{"role": "user"}]),
        "update_state": lambda store: store.update_state("c1", {"x": 1}, expected_rev=1),
        "size_breakdown": lambda store: store.size_breakdown("c1"),
        "snapshot": lambda store: maintenance.snapshot(store, "c1"),
        "next_seq": lambda store: maintenance.next_seq(store, "c1"),
        "reencode_state": lambda store: trimming.reencode_state(store, "c1"),
        "trim_candidates": lambda store: trimming.trim_candidates(
            store, "c1", keep=1, pinned=0, batch=10, below=100
        ),
        "measure_trim": lambda store: maintenance.measure_trim(store, "c1", keep=1, pinned=0),
        "remove_archived": lambda store: trimming.remove_archived(
            store, "c1", [0], pinned=0, incarnation=""
        ),
        "drop_archived": lambda store: maintenance.drop_archived(
            store, "c1", incarnation="", rev=1, seq=30
        ),
    }
    # Calls that read the turns only (a state of the wrong type is not theirs to see).
    TURNS_ONLY = {
        "reencode_turns": lambda store: trimming.reencode_turns(store, "c1"),
    }

    @pytest.mark.parametrize("call", CALLS)
    def test_a_string_at_the_state_key_is_corrupt_for_every_call(self, store, redis_client, call):
        redis_client.set(STATE, b"not a hash")
        before = every_key(redis_client)
        with pytest.raises(CorruptSession, match=r"rp:conv:\{c1\}:state.*string"):
            self.CALLS[call](store)
        assert every_key(redis_client) == before

    @pytest.mark.parametrize("call", CALLS | TURNS_ONLY)
    def test_a_hash_at_the_turns_key_is_corrupt_and_nothing_is_written(
        self, store, redis_client, call
    ):
        store.save(make_session())
        redis_client.delete(TURNS)
        redis_client.hset(TURNS, "not", "a list")
        before = every_key(redis_client)
        if call in ("next_seq", "reencode_state"):  # they read the state only
            self.CALLS[call](store)
            return
        with pytest.raises(CorruptSession, match=r"rp:conv:\{c1\}:turns.*hash"):
            (self.CALLS | self.TURNS_ONLY)[call](store)
        assert every_key(redis_client) == before

    def test_saving_a_loaded_session_with_a_wrong_typed_turns_key_writes_nothing(
        self, store, redis_client
    ):
        store.save(make_session())
        loaded = store.load("c1")
        loaded["record"] = {"changed": True}
        loaded["history"].append({"role": "user", "content": "new"})
        redis_client.delete(TURNS)
        redis_client.hset(TURNS, "not", "a list")
        before = redis_client.hgetall(STATE)
        with pytest.raises(CorruptSession, match="turns"):
            store.save(loaded)
        assert redis_client.hgetall(STATE) == before

    def test_a_wrong_typed_legacy_key_is_corrupt(self, store, redis_client):
        redis_client.rpush(store.keys.legacy("c1"), b"a list")
        with pytest.raises(CorruptSession, match="session:c1"):
            store.load("c1")
        with pytest.raises(CorruptSession, match="session:c1"):
            store.append_turns("c1", [{"role": "user"}])
        assert redis_client.lrange(store.keys.legacy("c1"), 0, -1) == [b"a list"]

    @pytest.mark.parametrize("field", ["rev", "seq", "bytes"])
    def test_a_non_integer_field_is_corrupt_and_never_rewritten(self, store, redis_client, field):
        store.save(make_session())
        redis_client.hset(STATE, field, "abc")
        before = every_key(redis_client)
        with pytest.raises(CorruptSession, match=rf"state.*'{field}' is not an integer"):
            store.append_turns("c1", [{"role": "user"}])
        with pytest.raises(CorruptSession, match=rf"'{field}' is not an integer"):
            store.update_state("c1", {"x": 1}, expected_rev=1)
        assert every_key(redis_client) == before

    @pytest.mark.parametrize("field", ["rev", "seq"])
    def test_load_of_a_non_integer_field_is_corrupt(self, store, redis_client, field):
        store.save(make_session())
        redis_client.hset(STATE, field, "1.5")
        with pytest.raises(CorruptSession, match=rf"'{field}' is not an integer"):
            store.load("c1")

    def test_a_huge_window_returns_every_turn(self, store):
        store.save(make_session())
        assert len(store.load("c1", window=10**20)["history"]) == 30

    @pytest.mark.parametrize("rev", ["1", 1.0, True, None])
    def test_expected_rev_must_be_an_int(self, store, rev):
        store.save(make_session())
        with pytest.raises(TypeError, match="expected_rev must be an int"):
            store.update_state("c1", {"x": 1}, expected_rev=rev)
        assert store.load("c1")["_rev"] == 1

    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
    def test_nan_and_infinity_are_refused_and_nothing_is_written(self, store, redis_client, bad):
        store.save(make_session())
        before = every_key(redis_client)
        with pytest.raises(CodecError, match="NaN and Infinity"):
            store.append_turns("c1", [{"role": "user", "score": [None, {"x": bad}]}])
        with pytest.raises(CodecError, match="NaN and Infinity"):
            store.update_state("c1", {"record": {"TOOL_SCORE": bad}}, expected_rev=1)
        with pytest.raises(CodecError, match="NaN and Infinity"):
            store.save(make_session("c2", extra=bad))
        assert every_key(redis_client) == before

    def test_a_legacy_blob_with_nan_reads_and_moves_as_none(self, store, redis_client):
        session = make_session("old", turns=2)
        session["record"]["TOOL_SCORE"] = {"score": float("nan"), "best": float("inf")}
        redis_client.set(store.keys.legacy("old"), json.dumps(session))
        assert store.load("old")["record"]["TOOL_SCORE"] == {"score": None, "best": None}
        store.append_turns("old", [{"role": "user"}])
        assert store.load("old")["record"]["TOOL_SCORE"] == {"score": None, "best": None}

    def test_a_legacy_blob_nested_too_deeply_is_corrupt(self, store, redis_client):
        depth = 100_000  # past orjson's limit and the stdlib's recursion limit
        redis_client.set(store.keys.legacy("deep"), '{"a":' * depth + "1" + "}" * depth)
        with pytest.raises(CorruptSession, match="nested too deeply"):
            store.load("deep")
        with pytest.raises(CorruptSession, match="session:deep"):
            store.append_turns("deep", [{"role": "user"}])

    def test_equal_bot_configs_in_any_key_order_are_stored_once(self, store, redis_client):
        forward = {"scenario": [1, 2], "system_prompt": "p", "generation_params": {"a": 1, "b": 2}}
        backward = {"generation_params": {"b": 2, "a": 1}, "system_prompt": "p", "scenario": [1, 2]}
        store.save(make_session("c1", bot_config=forward))
        store.save(make_session("c2", bot_config=backward))
        assert len(list(redis_client.scan_iter(match=store.keys.bot_config("*")))) == 1
        assert store.load("c2")["bot_config"] == forward

    def test_every_write_moves_the_last_write_time_forward(self, store, redis_client):
        store.save(make_session())
        long_ago = 1_000_000.0
        for write in (
            lambda: store.append_turns("c1", [{"role": "user"}]),
            lambda: store.update_state("c1", {"x": 1}, expected_rev=store.load("c1")["_rev"]),
        ):
            redis_client.zadd(store.keys.index_seen, {"c1": long_ago})
            before = time.time()
            write()
            assert redis_client.zscore(store.keys.index_seen, "c1") >= before


# --- what each write keeps, checked through the public calls -----------------------------


def seqs(session):
    return [turn["seq"] for turn in session["history"]]


class TestWhatWritesKeep:
    def test_a_key_removed_from_a_loaded_session_stays_removed(self, store, redis_client):
        store.save(make_session())
        loaded = store.load("c1")
        del loaded["input_slots"]

        store.save(loaded)

        again = store.load("c1", window=None)
        assert "input_slots" not in again
        assert again["record"] == make_session()["record"]
        assert not redis_client.hexists(store.keys.state("c1"), keys.state_field("input_slots"))
        assert int(redis_client.hget(store.keys.state("c1"), keys.BYTES)) == stored_bytes(
            redis_client, store, "c1"
        )

    @pytest.mark.parametrize("write", ["save", "append_turns", "save a loaded dict"])
    def test_a_write_of_more_than_a_thousand_turns_stores_each_once(
        self, store, redis_client, write
    ):
        count = 2501  # the scripts push in slices of 1000: two full slices and a part
        turns = [{"role": "user", "content": f"turn {i}"} for i in range(count)]
        if write == "save":
            store.save({**make_session(turns=0), "history": turns})
        elif write == "append_turns":
            store.save(make_session(turns=0))
            assert store.append_turns("c1", turns) == list(range(count))
        else:
            store.save(make_session(turns=0))
            loaded = store.load("c1")
            loaded["history"] += turns
            store.save(loaded)

        full = store.load("c1", window=None)
        assert seqs(full) == list(range(count))
        assert contents(full) == [f"turn {i}" for i in range(count)]
        assert full["_turns"] == count
        assert redis_client.llen(store.keys.turns("c1")) == count
        assert int(redis_client.hget(store.keys.state("c1"), keys.BYTES)) == stored_bytes(
            redis_client, store, "c1"
        )

    def test_saves_of_a_loaded_session_with_new_turns_keep_the_byte_count_exact(
        self, store, redis_client
    ):
        store.save(make_session(turns=5))
        for n in range(4):
            loaded = store.load("c1", window=3)
            loaded["history"] += [
                {"role": "user", "content": f"new {n} " + "x" * 300 * n},
                {"role": "assistant", "content": f"reply {n}"},
            ]
            loaded["record"] = {"LOOP_COUNT": [n] * (n + 1), "HISTORY_QUESTION": ["q"] * n}
            # Another writer appends between the load and the save: the save must count it.
            get_store().append_turns("c1", [{"role": "user", "content": f"meanwhile {n}"}])
            store.save(loaded)

            measured = stored_bytes(redis_client, store, "c1")
            assert int(redis_client.hget(store.keys.state("c1"), keys.BYTES)) == measured, n
            assert redis_client.zscore(store.keys.index_bytes, "c1") == measured, n
        assert store.load("c1", window=None)["_turns"] == 5 + 4 * 3

    @pytest.mark.django_db(transaction=True)
    def test_replacing_a_trimmed_session_keeps_its_archived_turns(self, store, redis_client):
        store.save(make_session(turns=30))
        trim_history("c1", keep=5)
        assert redis_client.hget(store.keys.state("c1"), keys.ARCHIVED) == b"25"
        again = [{"role": "user", "content": f"again {i}"} for i in range(3)]

        store.save({**make_session(turns=0), "history": again})

        assert redis_client.hget(store.keys.state("c1"), keys.ARCHIVED) == b"25"
        full = store.load("c1", window=None)
        assert seqs(full) == [*range(25), 30, 31, 32]
        assert contents(full) == [f"turn {i}" for i in range(25)] + [t["content"] for t in again]
        assert full["_turns"] == 33

    @pytest.mark.django_db(transaction=True)
    def test_windows_over_pinned_turns_return_exactly_the_last_turns(self, store, redis_client):
        store.save(make_session(turns=30))
        trim_history("c1", keep=5, pinned=2)
        items = redis_client.lrange(store.keys.turns("c1"), 0, -1)
        assert [int(item.split(b"|")[0]) for item in items] == [0, 1, 25, 26, 27, 28, 29]

        for window in (0, 1, 3, 5, 6, 7, 8, 25, 28, 29, 30, 31, None):
            first = 0 if window is None else max(30 - window, 0)
            loaded = store.load("c1", window=window)
            assert seqs(loaded) == list(range(first, 30)), window
            assert contents(loaded) == [f"turn {i}" for i in range(first, 30)], window


@pytest.fixture(params=["sync", "async"])
def private_store(request, sessions_redis):
    """(a redis-server of this test's own, a store on it with short timeouts): sync or async."""
    server = sessions_redis(SOCKET_TIMEOUT=0.5, SOCKET_CONNECT_TIMEOUT=0.5)
    with store_of_kind(request.param) as store:
        yield server, store


class TestRedisMisbehaving:
    def test_every_call_reloads_its_script_after_script_flush(self, private_store):
        server, store = private_store
        client = server.client()
        try:
            client.script_flush()
            rev = store.save(make_session(turns=3))
            client.script_flush()
            assert store.append_turns("c1", [{"role": "user", "content": "appended"}]) == [3]
            client.script_flush()
            rev = store.update_state("c1", {"user_id": "u-2"}, expected_rev=rev)
            client.script_flush()
            loaded = store.load("c1")
            loaded["history"].append({"role": "assistant", "content": "saved"})
            assert store.save(loaded) == rev + 1
            client.script_flush()
            assert store.size_breakdown("c1")["turns"] == 5
        finally:
            client.close()
        full = store.load("c1", window=None)
        assert contents(full) == ["turn 0", "turn 1", "turn 2", "appended", "saved"]
        assert full["user_id"] == "u-2"

    def test_a_redis_that_stops_answering_is_unavailable_not_a_raw_timeout(self, private_store):
        server, store = private_store
        store.save(make_session(turns=3))
        server.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=rf"127\.0\.0\.1:{server.port}"):
                store.load("c1")
            with pytest.raises(StoreUnavailable, match="is unreachable"):
                store.append_turns("c1", [{"role": "user"}])
            assert time.monotonic() - started < 30
        finally:
            server.process.send_signal(signal.SIGCONT)
        assert store.load("c1")["_turns"] in (3, 4)

    def test_the_async_stores_errors_never_show_the_password(self):
        port = free_port()  # nothing listens there
        options = settings.CACHES["sessions"]["OPTIONS"]

        async def load(url):
            store = AsyncConversationStore.from_url(
                url, options, client_options={"socket_connect_timeout": 0.5}
            )
            try:
                return await store.load("c1")
            finally:
                await store.aclose()

        for url, shown in (
            (f"redis://:hunter2@127.0.0.1:{port}/0", f"redis://:***@127.0.0.1:{port}/0"),
            (f"redis://robot:hunter2@127.0.0.1:{port}/3", f"robot:***@127.0.0.1:{port}/3"),
        ):
            with pytest.raises(StoreUnavailable, match="is unreachable") as raised:
                asyncio.run(load(url))
            assert shown in str(raised.value)
            assert "hunter2" not in str(raised.value)
            assert "hunter2" not in repr(raised.value.args)
