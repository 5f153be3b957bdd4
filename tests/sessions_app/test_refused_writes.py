"""Writes that could never be read back, or that would drop a change silently, are refused with
a clear error and write nothing: a bot_config that is not an object, and a loaded dict whose
stored turns were edited or removed. Both stores, as in test_store.py."""

import json

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.management import call_command

from sessions_app import services
from sessions_app.codec import codec_from_options
from sessions_app.store import ConversationStore, CorruptSession
from tests.sessions_app import test_store
from tests.sessions_app.test_store import contents, make_session

# Every test runs against the sync store and the async one.
store = test_store.store

NOT_OBJECTS = [["a", "list"], "text", 7, True]


def snapshot(redis_client):
    """Every key of the tests' database and its value, as Redis holds it."""
    values = {}
    for key in redis_client.scan_iter():
        kind = redis_client.type(key)
        if kind == b"string":
            values[key] = redis_client.get(key)
        elif kind == b"hash":
            values[key] = redis_client.hgetall(key)
        elif kind == b"list":
            values[key] = redis_client.lrange(key, 0, -1)
        else:
            values[key] = redis_client.zrange(key, 0, -1)
    return values


class TestBotConfigMustBeAnObject:
    @pytest.mark.parametrize("bot_config", NOT_OBJECTS)
    def test_a_new_session_is_refused_and_nothing_is_written(self, store, redis_client, bot_config):
        with pytest.raises(TypeError, match=r"bot_config must be a JSON object.*got <class"):
            store.save(make_session(bot_config=bot_config))
        assert redis_client.dbsize() == 0

    @pytest.mark.parametrize("bot_config", NOT_OBJECTS)
    def test_update_state_is_refused_and_nothing_changes(self, store, redis_client, bot_config):
        store.save(make_session())
        before = snapshot(redis_client)
        with pytest.raises(
            TypeError, match=f"bot_config must be a JSON object.*{type(bot_config)}"
        ):
            store.update_state("c1", {"bot_config": bot_config, "user_id": "u-2"}, expected_rev=1)
        assert snapshot(redis_client) == before
        assert store.load("c1")["user_id"] == "u-1"

    def test_saving_a_loaded_dict_with_one_is_refused(self, store, redis_client):
        store.save(make_session())
        loaded = store.load("c1")
        loaded["bot_config"] = ["scenario"]
        loaded["history"].append({"role": "user", "content": "new"})
        before = snapshot(redis_client)
        with pytest.raises(TypeError, match=r"bot_config must be a JSON object.*list"):
            store.save(loaded)
        assert snapshot(redis_client) == before


class TestLegacyBlobWithABadBotConfig:
    def write_blob(self, redis_client, store):
        key = store.keys.legacy("old")
        redis_client.set(key, json.dumps(make_session("old", turns=3, bot_config=[1, 2])))
        return key

    def test_the_first_write_is_corrupt_naming_the_blob_which_stays(self, store, redis_client):
        key = self.write_blob(redis_client, store)
        blob = redis_client.get(key)
        with pytest.raises(CorruptSession, match=rf"'{key}'.*bot_config is a list"):
            store.append_turns("old", [{"role": "user", "content": "after"}])
        assert redis_client.get(key) == blob
        assert not redis_client.exists(store.keys.state("old"), store.keys.turns("old"))

    @pytest.mark.django_db
    def test_migrate_legacy_reports_it_and_leaves_it(self, store, redis_client, capsys):
        key = self.write_blob(redis_client, store)
        blob = redis_client.get(key)
        call_command("compact_sessions", "--migrate-legacy", "--format", "json")
        report = json.loads(capsys.readouterr().out)
        assert report["migrated"] == 0
        assert report["legacy_left"] == 1
        assert [(s["conversation_id"], s["key"]) for s in report["skipped"]] == [("old", key)]
        assert "bot_config is a list" in report["skipped"][0]["reason"]
        assert redis_client.get(key) == blob


class TestStoredTurnsAreNotEditedThroughSave:
    def loaded(self, store, window=5):
        store.save(make_session())
        return store.load("c1", window=window)

    def test_an_edit_is_refused_naming_the_turn_and_nothing_is_written(self, store, redis_client):
        loaded = self.loaded(store)
        loaded["history"][2]["content"] = "rewritten"
        loaded["history"].append({"role": "user", "content": "new"})
        loaded["user_id"] = "u-2"
        before = snapshot(redis_client)
        with pytest.raises(ValueError, match=r"turn seq 27 of conversation 'c1' differs"):
            store.save(loaded)
        assert snapshot(redis_client) == before

    @pytest.mark.parametrize(("removed", "seq"), [(2, 27), (-1, 29)])
    def test_a_removal_is_refused_naming_the_turn(self, store, redis_client, removed, seq):
        loaded = self.loaded(store)
        del loaded["history"][removed]
        before = snapshot(redis_client)
        with pytest.raises(ValueError, match=rf"turn seq {seq} of conversation 'c1' was removed"):
            store.save(loaded)
        assert snapshot(redis_client) == before

    def test_a_turn_replaced_by_a_new_one_is_a_removal(self, store):
        loaded = self.loaded(store)
        loaded["history"][1] = {"role": "user", "content": "instead"}
        with pytest.raises(ValueError, match=r"turn seq 26 .* was removed"):
            store.save(loaded)

    def test_a_turn_that_claims_a_seq_never_stored_is_refused(self, store):
        loaded = self.loaded(store)
        loaded["history"].append({"role": "user", "content": "new", "seq": 30})
        with pytest.raises(ValueError, match=r"turn seq 30 .* is not a stored turn"):
            store.save(loaded)

    @pytest.mark.parametrize("seq", ["27", -1, 2.0, None])
    def test_a_seq_that_is_no_seq_is_refused(self, store, seq):
        loaded = self.loaded(store)
        loaded["history"][2]["seq"] = seq
        with pytest.raises(ValueError, match=r"a turn's seq must be an integer >= 0"):
            store.save(loaded)

    def test_an_edit_that_no_longer_encodes_is_an_edit(self, store, redis_client):
        loaded = self.loaded(store)
        loaded["history"][0]["score"] = float("nan")
        with pytest.raises(ValueError, match=r"turn seq 25 .* differs"):
            store.save(loaded)

    def test_turns_before_the_loaded_window_are_not_removed(self, store):
        # The oldest loaded turn dropped looks like a smaller window: it is not in the dict,
        # so it is left as stored (the rule in docs/ARCHITECTURE.md).
        loaded = self.loaded(store)
        del loaded["history"][0]
        loaded["history"].append({"role": "user", "content": "new"})
        assert store.save(loaded) == 2
        assert contents(store.load("c1", window=None))[-7:] == [
            *[f"turn {i}" for i in range(24, 30)],
            "new",
        ]

    def test_turns_appended_meanwhile_do_not_hide_an_edit(self, store):
        loaded = self.loaded(store)
        store.append_turns("c1", [{"role": "user", "content": f"other {i}"} for i in range(40)])
        unchanged = {**loaded, "history": [dict(turn) for turn in loaded["history"]]}
        loaded["history"][0]["content"] = "rewritten"
        with pytest.raises(ValueError, match=r"turn seq 25 .* differs"):
            store.save(loaded)
        unchanged["history"].append({"role": "user", "content": "mine"})
        assert store.save(unchanged) == 2
        history = store.load("c1", window=None)["history"]
        assert [t["seq"] for t in history] == list(range(71))
        assert history[25]["content"] == "turn 25"
        assert history[-1]["content"] == "mine"

    def test_a_legacy_load_is_checked_against_the_blob(self, store, redis_client):
        key = store.keys.legacy("old")
        redis_client.set(key, json.dumps(make_session("old")))
        loaded = store.load("old", window=3)
        loaded["history"][0]["content"] = "rewritten"
        with pytest.raises(ValueError, match="turn seq 27 of conversation 'old' differs"):
            store.save(loaded)
        assert json.loads(redis_client.get(key))["history"][27]["content"] == "turn 27"


@pytest.mark.django_db(transaction=True)
def test_an_edit_of_an_archived_turn_is_refused(store):
    store.save(make_session())
    services.trim_history("c1", keep=10)
    loaded = store.load("c1", window=None)
    assert len(loaded["history"]) == 30
    unchanged = {**loaded, "history": [dict(turn) for turn in loaded["history"]]}
    loaded["history"][3]["content"] = "rewritten"
    with pytest.raises(ValueError, match=r"turn seq 3 .* differs"):
        store.save(loaded)
    del unchanged["history"][4]
    with pytest.raises(ValueError, match=r"turn seq 4 .* was removed"):
        store.save(unchanged)
    assert contents(store.load("c1", window=None)) == [f"turn {i}" for i in range(30)]


def test_a_turn_stored_compressed_by_other_codec_options_is_not_an_edit(redis_client):
    client = caches["sessions"].client.get_client(write=True)
    alias = settings.CACHES["sessions"]["OPTIONS"]
    compressing = ConversationStore(
        client, codec_from_options({**alias, "COMPRESS_MIN_LENGTH": 64})
    )
    plain = ConversationStore(client, codec_from_options({**alias, "COMPRESS_MIN_LENGTH": 10**9}))
    session = make_session()
    session["history"][-1]["content"] = "long " * 200
    compressing.save(session)
    stored = redis_client.lindex(compressing.keys.turns("c1"), -1)
    assert stored.startswith(b"29|\x04\x22\x4d\x18")  # an lz4 frame
    loaded = plain.load("c1", window=3)
    loaded["history"].append({"role": "user", "content": "new"})
    assert plain.save(loaded) == 2
    loaded = plain.load("c1", window=3)
    loaded["history"][1]["content"] = "short"
    with pytest.raises(ValueError, match=r"turn seq 29 .* differs"):
        plain.save(loaded)
