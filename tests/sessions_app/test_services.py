"""Trim, compaction, idle archive and restore, against the real Redis and the test database.

Also `store.load(window=None)` reading the archive, which these services fill.
"""

import json
import time

import orjson
import pytest
from django.db import DatabaseError

from convstore.codec import LZ4_MAGIC
from convstore.exceptions import SessionBusy, SessionExists
from convstore.state_fields import is_state_field
from sessions_app import archive, maintenance, trimming
from sessions_app.archive import archive_turns
from sessions_app.maintenance import WRITTEN
from sessions_app.models import ArchivedSession, ArchivedTurn
from sessions_app.services import (
    COMPACTION_LOCK,
    Action,
    CompactionPolicy,
    compact_oversized,
    compact_session,
    plan_compaction,
    rebuild_indexes,
    restore_session,
    trim_history,
)
from sessions_app.store import (
    CorruptSession,
    SessionNotFound,
    StoreUnavailable,
    get_store,
)
from tests.sessions_app.factories import make_turn, redis_contents, save_session, stored_bytes

pytestmark = pytest.mark.django_db


def policy(**overrides):
    values = {"max_bytes": 10_000_000, "max_turns": 20, "keep_turns": 5, "batch_size": 7}
    return CompactionPolicy(**{**values, **overrides})


def redis_seqs(store, cid):
    return [
        int(item.split(b"|", 1)[0]) for item in store.client.lrange(store.keys.turns(cid), 0, -1)
    ]


def archived_seqs(cid):
    return list(ArchivedTurn.objects.filter(conversation_id=cid).values_list("seq", flat=True))


def state(store, cid):
    return store.client.hgetall(store.keys.state(cid))


# --- trim_history -------------------------------------------------------------------------


def test_trim_moves_the_head_to_the_archive_and_keeps_the_tail(store):
    history = save_session(store, "c1", turns=30)
    bytes_before = int(state(store, "c1")[b"bytes"])

    result = trim_history("c1", keep=10, batch_size=7)

    assert result.turns_archived == 20
    assert redis_seqs(store, "c1") == list(range(20, 30))
    assert archived_seqs("c1") == list(range(20))
    row = ArchivedTurn.objects.get(conversation_id="c1", seq=3)
    assert row.role == "assistant"
    assert row.turn == history[3]
    assert row.turned_at.isoformat() == history[3]["created_at"]
    fields = state(store, "c1")
    assert int(fields[b"archived"]) == 20
    assert int(fields[b"bytes"]) == bytes_before - result.bytes_freed
    assert store.client.zscore(store.keys.index_bytes, "c1") == int(fields[b"bytes"])


def test_trim_again_archives_nothing_more(store):
    save_session(store, "c1", turns=12)
    trim_history("c1", keep=4)

    again = trim_history("c1", keep=4)

    assert (again.turns_archived, again.bytes_freed) == (0, 0)
    assert ArchivedTurn.objects.count() == 8


def test_pinned_turns_stay_in_redis(store):
    save_session(store, "c1", turns=30)

    trim_history("c1", keep=5, pinned=2)

    assert redis_seqs(store, "c1") == [0, 1, *range(25, 30)]
    assert archived_seqs("c1") == list(range(2, 25))


def test_trim_of_a_missing_session_raises(store):
    with pytest.raises(SessionNotFound, match="'nobody' does not exist"):
        trim_history("nobody", keep=3)


def test_trim_rejects_negative_numbers():
    with pytest.raises(ValueError, match="keep and pinned"):
        trim_history("c1", keep=-1)


def test_appends_after_a_trim_continue_the_sequence(store):
    save_session(store, "c1", turns=10)
    trim_history("c1", keep=2)

    assert store.append_turns("c1", [make_turn(10)]) == [10]
    assert redis_seqs(store, "c1") == [8, 9, 10]


def test_removal_takes_only_turns_still_there(store):
    save_session(store, "c1", turns=10)
    inc, turns = trimming.trim_candidates(store, "c1", keep=4, pinned=0, batch=100, below=100)
    archive_turns(conversation_id="c1", incarnation=inc, turns=turns)
    seqs = [turn["seq"] for turn in turns]
    store.append_turns("c1", [make_turn(10)])

    first = trimming.remove_archived(store, "c1", seqs, pinned=0, incarnation=inc)
    second = trimming.remove_archived(store, "c1", seqs, pinned=0, incarnation=inc)

    assert first[0] == 6
    assert second == (0, 0)
    assert redis_seqs(store, "c1") == [6, 7, 8, 9, 10]
    assert int(state(store, "c1")[b"archived"]) == 6


def test_a_crash_between_copy_and_removal_is_repaired_by_the_next_trim(store):
    history = save_session(store, "c1", turns=20)
    # The first run copies its batch to the archive and stops before removing it from Redis.
    inc, turns = trimming.trim_candidates(store, "c1", keep=5, pinned=0, batch=100, below=100)
    archive_turns(conversation_id="c1", incarnation=inc, turns=turns)
    assert redis_seqs(store, "c1") == list(range(20))
    assert archived_seqs("c1") == list(range(15))
    assert [t["seq"] for t in store.load("c1", window=None)["history"]] == list(range(20))

    result = trim_history("c1", keep=5)

    assert result.turns_archived == 15
    assert archived_seqs("c1") == list(range(15))
    assert redis_seqs(store, "c1") == list(range(15, 20))
    loaded = store.load("c1", window=None)["history"]
    assert [{k: v for k, v in t.items() if k != "seq"} for t in loaded] == history


def test_a_corrupt_turn_stops_the_trim_and_is_left_in_place(store):
    save_session(store, "c1", turns=10)
    turns_key = store.keys.turns("c1")
    store.client.lset(turns_key, 3, b"3|{not json")
    before = store.client.lrange(turns_key, 0, -1)

    with pytest.raises(CorruptSession, match="c1"):
        trim_history("c1", keep=2, batch_size=100)

    assert store.client.lrange(turns_key, 0, -1) == before
    assert ArchivedTurn.objects.count() == 0


# --- load with the archive ---------------------------------------------------------------


def test_load_returns_archived_turns_first_each_once(store):
    history = save_session(store, "c1", turns=30)
    trim_history("c1", keep=5, pinned=1)

    loaded = store.load("c1", window=None)

    assert [t["seq"] for t in loaded["history"]] == list(range(30))
    assert [{k: v for k, v in t.items() if k != "seq"} for t in loaded["history"]] == history
    assert loaded["_turns"] == 30


def test_a_window_inside_redis_does_not_touch_the_database(store, django_assert_num_queries):
    save_session(store, "c1", turns=30)
    trim_history("c1", keep=10, pinned=1)

    with django_assert_num_queries(0):
        loaded = store.load("c1", window=10)

    assert [t["seq"] for t in loaded["history"]] == list(range(20, 30))


def test_a_window_past_redis_reads_the_archive(store, django_assert_num_queries):
    save_session(store, "c1", turns=30)
    trim_history("c1", keep=10, pinned=1)

    with django_assert_num_queries(1):
        loaded = store.load("c1", window=12)

    assert [t["seq"] for t in loaded["history"]] == list(range(18, 30))


# --- the policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_turns": 0}, "max_turns must be at least 1"),
        ({"max_bytes": -5}, "max_bytes must be at least 1"),
        ({"pinned": -1}, "pinned must not be negative"),
        ({"keep_turns": 50}, r"keep_turns \(50\) must not be larger than max_turns \(20\)"),
    ],
)
def test_policy_rejects_bad_numbers(overrides, message):
    with pytest.raises(ValueError, match=message):
        policy(**overrides)


def test_policy_from_settings_takes_overrides(settings):
    settings.ROBOTPERF_COMPACTION = {
        **settings.ROBOTPERF_COMPACTION,
        "MAX_TURNS": 300,
        "KEEP_TURNS": 30,
    }

    built = CompactionPolicy.from_settings(keep_turns=40, pinned=None)

    assert (built.max_turns, built.keep_turns) == (300, 40)
    assert built.pinned == settings.ROBOTPERF_COMPACTION["PINNED"]


# --- compaction ---------------------------------------------------------------------------


def test_compact_oversized_trims_only_oversized_sessions(store):
    for cid in ("small-1", "small-2", "small-3"):
        save_session(store, cid, turns=8)
    save_session(store, "long-1", turns=25)
    save_session(store, "long-2", turns=40)
    save_session(store, "heavy", turns=10, size=300)
    sizes_before = dict(maintenance.index_entries(store))

    report = compact_oversized(policy(max_bytes=15_000))

    assert (report.scanned, report.oversized, report.compacted) == (6, 3, 3)
    assert report.turns_archived == 20 + 35 + 5
    assert report.skipped == []
    assert report.failed == []
    sizes_after = dict(maintenance.index_entries(store))
    compacted = ("long-1", "long-2", "heavy")
    assert report.bytes_before == sum(sizes_before[cid] for cid in compacted)
    assert report.bytes_after == sum(sizes_after[cid] for cid in compacted)
    assert sizes_after["heavy"] < 15_000 < sizes_before["heavy"]
    assert all(len(redis_seqs(store, cid)) == 5 for cid in compacted)
    assert redis_seqs(store, "small-1") == list(range(8))


def test_compact_keeps_pinned_turns(store):
    save_session(store, "long", turns=30)

    compact_oversized(policy(pinned=1))

    assert redis_seqs(store, "long") == [0, *range(25, 30)]


def test_dry_run_changes_nothing_and_reports_what_a_run_would_do(store, redis_client):
    save_session(store, "long-1", turns=25)
    save_session(store, "long-2", turns=40)
    save_session(store, "small", turns=3)
    redis_client.zadd(store.keys.index_bytes, {"ghost": 10})
    before = redis_contents(redis_client)

    dry = plan_compaction(policy())

    assert redis_contents(redis_client) == before
    assert ArchivedTurn.objects.count() == 0
    real = compact_oversized(policy())
    assert dry.dry_run
    assert not real.dry_run
    for figure in ("scanned", "oversized", "compacted", "turns_archived", "bytes_before"):
        assert getattr(dry, figure) == getattr(real, figure), figure
    assert dry.bytes_after == real.bytes_after
    assert (dry.pruned, real.pruned) == (0, 1)


def test_limit_stops_after_that_many_compacted(store):
    for n in range(4):
        save_session(store, f"long-{n}", turns=30)

    report = compact_oversized(policy(), limit=2)

    assert report.compacted == 2
    assert sum(len(redis_seqs(store, f"long-{n}")) == 5 for n in range(4)) == 2


def test_limit_must_be_positive():
    with pytest.raises(ValueError, match="limit must be at least 1"):
        compact_oversized(policy(), limit=0)


def test_named_conversations_only(store):
    save_session(store, "long-1", turns=30)
    save_session(store, "long-2", turns=30)

    report = compact_oversized(policy(), conversation_ids=["long-2", "nobody"])

    assert report.compacted == 1
    assert len(redis_seqs(store, "long-1")) == 30
    assert len(redis_seqs(store, "long-2")) == 5
    assert report.missing == ["nobody"]
    assert report.skipped == []


def test_a_corrupt_session_is_skipped_reported_and_left_alone(store):
    save_session(store, "long", turns=30)
    save_session(store, "bad", turns=30)
    store.client.hset(store.keys.state("bad"), "doc", b"\x28\xb5\x2f\xfd garbage")
    store.client.lset(store.keys.turns("bad"), 2, b"2|[broken")
    before = redis_contents(store.client)

    report = compact_oversized(policy())

    assert report.compacted == 1
    assert [s["conversation_id"] for s in report.skipped] == ["bad"]
    assert "corrupt" in report.skipped[0]["reason"]
    bad_keys = (store.keys.state("bad"), store.keys.turns("bad"))
    after = redis_contents(store.client)
    assert {k: after[k.encode()] for k in bad_keys} == {k: before[k.encode()] for k in bad_keys}
    assert not ArchivedTurn.objects.filter(conversation_id="bad").exists()


def test_compact_session_migrates_a_legacy_blob_and_trims_it(store, redis_client):
    legacy = {
        "conversation_id": "old-1",
        "bot_id": "bot-a",
        "history": [make_turn(seq) for seq in range(30)],
    }
    redis_client.set(store.keys.legacy("old-1"), json.dumps(legacy))

    result = compact_session("old-1", policy())

    assert result.migrated
    assert result.action in {Action.TRIMMED, Action.TRIMMED_REENCODED}
    assert result.turns_archived == 25
    assert not redis_client.exists(store.keys.legacy("old-1"))
    assert redis_seqs(store, "old-1") == list(range(25, 30))
    assert [t["seq"] for t in store.load("old-1", window=None)["history"]] == list(range(30))


def test_legacy_blobs_are_moved_to_the_split_layout(store, redis_client):
    legacy = {
        "conversation_id": "old-1",
        "bot_id": "bot-a",
        "record": {"TOOL_SCORE": float("nan")},
        "bot_config": {"scenario": "x"},
        "history": [make_turn(seq) for seq in range(30)],
    }
    redis_client.set(store.keys.legacy("old-1"), json.dumps(legacy))
    redis_client.set(store.keys.legacy("old-bad"), b"{oops")

    report = compact_oversized(policy(), migrate_legacy=True)

    assert report.migrated == 1
    assert [s["conversation_id"] for s in report.skipped] == ["old-bad"]
    assert redis_client.get(store.keys.legacy("old-bad")) == b"{oops"
    assert not redis_client.exists(store.keys.legacy("old-1"))
    assert report.compacted == 1
    assert report.turns_archived == 25
    loaded = store.load("old-1", window=None)
    assert [t["seq"] for t in loaded["history"]] == list(range(30))
    assert loaded["bot_config"] == {"scenario": "x"}


def test_compaction_re_encodes_with_the_current_codec(store, redis_client):
    save_session(store, "c1", turns=3)
    state_key = store.keys.state("c1")
    notes = "a compressible note " * 2000
    # Written uncompressed, as a store without the compressor would have.
    raw = orjson.dumps(notes)
    size = int(redis_client.hget(state_key, "bytes")) + len(raw)
    redis_client.hset(state_key, mapping={"s:notes": raw, "bytes": size})

    result = compact_session("c1", policy())

    assert result.action is Action.REENCODED
    assert redis_client.hget(state_key, "s:notes").startswith(LZ4_MAGIC)
    assert result.bytes_after < result.bytes_before == size
    assert store.load("c1")["notes"] == notes


def test_a_first_release_session_stored_as_one_doc_is_read_and_split_on_its_next_write(
    store, redis_client
):
    history = save_session(store, "c1", turns=3)
    state_key = store.keys.state("c1")
    expected = store.load("c1", window=None)
    state = {
        k: v for k, v in expected.items() if k not in ("history", "bot_config", "_rev", "_turns")
    }
    # The layout of the first release: the whole state as one encoded doc.
    fields = [name for name in redis_client.hkeys(state_key) if is_state_field(name)]
    doc = store.codec.encode(state)
    turn_bytes = int(redis_client.hget(state_key, "bytes")) - sum(
        redis_client.hstrlen(state_key, name) for name in fields
    )
    redis_client.hdel(state_key, *fields)
    redis_client.hset(state_key, mapping={"doc": doc, "bytes": turn_bytes + len(doc)})
    redis_client.zadd(store.keys.index_bytes, {"c1": turn_bytes + len(doc)})

    assert store.load("c1", window=None) == expected
    assert store.update_state("c1", {"user_id": "u-2"}, expected_rev=expected["_rev"]) == 2

    assert not redis_client.hexists(state_key, "doc")
    assert redis_client.hexists(state_key, "s:record")
    assert store.load("c1")["user_id"] == "u-2"
    assert [t["content"] for t in store.load("c1", window=None)["history"]] == [
        t["content"] for t in history
    ]
    state_bytes = sum(
        redis_client.hstrlen(state_key, name)
        for name in redis_client.hkeys(state_key)
        if is_state_field(name)
    )
    turns = sum(map(len, redis_client.lrange(store.keys.turns("c1"), 0, -1)))
    assert int(redis_client.hget(state_key, "bytes")) == state_bytes + turns
    assert redis_client.zscore(store.keys.index_bytes, "c1") == state_bytes + turns


def test_stale_index_entries_are_pruned(store, redis_client):
    save_session(store, "c1", turns=3)
    redis_client.zadd(store.keys.index_bytes, {"expired": 500})
    redis_client.zadd(store.keys.index_seen, {"expired": 1})

    report = compact_oversized(policy())

    assert report.pruned == 1
    assert redis_client.zrange(store.keys.index_bytes, 0, -1) == [b"c1"]
    assert redis_client.zrange(store.keys.index_seen, 0, -1) == [b"c1"]


def test_rebuild_indexes_from_the_keys(store, redis_client):
    save_session(store, "c1", turns=3)
    save_session(store, "c2", turns=9)
    expected = dict(maintenance.index_entries(store))
    redis_client.delete(store.keys.index_bytes, store.keys.index_seen)
    redis_client.zadd(store.keys.index_bytes, {"gone": 1})

    counts = rebuild_indexes(batch_size=1)

    assert counts == {"indexed": 2, "missing": 2, "pruned": 1}
    assert dict(maintenance.index_entries(store)) == expected
    assert redis_client.zcard(store.keys.index_seen) == 2


# --- idle sessions ------------------------------------------------------------------------


def make_idle(store, redis_client, cid, *, seconds):
    redis_client.zadd(store.keys.index_seen, {cid: time.time() - seconds})


def test_an_idle_session_moves_to_the_database_and_comes_back(store, redis_client):
    history = save_session(store, "idle", turns=12)
    save_session(store, "busy", turns=12)
    original = store.load("idle", window=None)
    make_idle(store, redis_client, "idle", seconds=3600)

    report = compact_oversized(policy(idle_archive_after=600))

    assert (report.idle, report.archived_sessions, report.turns_archived) == (1, 1, 12)
    assert store.load("idle") is None
    assert redis_client.zscore(store.keys.index_bytes, "idle") is None
    archived = ArchivedSession.objects.get(conversation_id="idle")
    assert (archived.bot_id, archived.next_seq, archived.rev) == ("bot-a", 12, original["_rev"])
    assert archived_seqs("idle") == list(range(12))
    assert store.load("busy") is not None

    assert restore_session("idle", keep_turns=4) == 4

    assert redis_seqs(store, "idle") == list(range(8, 12))
    restored = store.load("idle", window=None)
    assert restored == original
    assert [{k: v for k, v in t.items() if k != "seq"} for t in restored["history"]] == history
    assert store.append_turns("idle", [make_turn(12)]) == [12]
    assert not ArchivedSession.objects.filter(conversation_id="idle").exists()


def test_an_idle_session_written_meanwhile_stays_in_redis(store):
    save_session(store, "c1", turns=5)
    snapshot = maintenance.snapshot(store, "c1")
    store.append_turns("c1", [make_turn(5)])

    dropped = maintenance.drop_archived(
        store, "c1", incarnation=snapshot.incarnation, rev=snapshot.rev, seq=snapshot.next_seq
    )
    assert dropped == WRITTEN
    assert redis_seqs(store, "c1") == list(range(6))


def test_restore_refuses_a_session_that_is_in_redis(store, redis_client):
    save_session(store, "c1", turns=5)
    make_idle(store, redis_client, "c1", seconds=3600)
    compact_oversized(policy(idle_archive_after=60))
    save_session(store, "c1", turns=2)

    with pytest.raises(SessionExists, match="is live in Redis again"):
        restore_session("c1")
    assert ArchivedSession.objects.filter(conversation_id="c1").exists()


def test_restore_of_an_unknown_session_raises():
    with pytest.raises(SessionNotFound, match="'nobody' does not exist"):
        restore_session("nobody")


# --- hostile cases --------------------------------------------------------------------------


def test_trim_copies_before_it_removes(store, monkeypatch):
    save_session(store, "c1", turns=30)
    removed_after_copy = []
    real_remove = trimming.remove_archived_many

    def remove_checking_the_archive(store, removals, **kwargs):
        for cid, seqs, _ in removals:
            assert set(archived_seqs(cid)) >= set(seqs), "removing turns that are not archived"
            removed_after_copy.extend(seqs)
        return real_remove(store, removals, **kwargs)

    monkeypatch.setattr(trimming, "remove_archived_many", remove_checking_the_archive)
    trim_history("c1", keep=5, batch_size=7)

    assert removed_after_copy == list(range(25))
    assert redis_seqs(store, "c1") == list(range(25, 30))


def test_a_failing_archive_leaves_every_turn_in_redis(store, monkeypatch):
    save_session(store, "c1", turns=30)

    def archive_fails(rows):
        raise DatabaseError("disk full")

    monkeypatch.setattr(ArchivedTurn.objects, "add_missing", archive_fails)
    with pytest.raises(DatabaseError, match="disk full"):
        trim_history("c1", keep=5)

    assert redis_seqs(store, "c1") == list(range(30))
    assert archived_seqs("c1") == []


def test_a_corrupt_state_doc_moves_nothing_and_is_reported(store):
    save_session(store, "bad", turns=30)
    store.client.hset(store.keys.state("bad"), "doc", b"\x00garbage")

    report = compact_oversized(policy())

    assert report.skipped == [
        {
            "conversation_id": "bad",
            "key": store.keys.state("bad"),
            "reason": report.skipped[0]["reason"],
        }
    ]
    assert report.turns_archived == 0
    assert redis_seqs(store, "bad") == list(range(30))
    assert archived_seqs("bad") == []


def test_a_corrupt_turn_in_a_later_batch_is_reported_with_what_was_moved(store):
    save_session(store, "bad", turns=30)
    store.client.lset(store.keys.turns("bad"), 10, b"10|[broken")

    report = compact_oversized(policy(batch_size=7))

    assert report.skipped[0]["key"] == store.keys.turns("bad")
    assert report.turns_archived == 7 == len(archived_seqs("bad"))
    assert redis_seqs(store, "bad") == list(range(7, 30))
    assert store.client.lindex(store.keys.turns("bad"), 3) == b"10|[broken"


def test_wrong_typed_sessions_are_reported_and_the_others_compacted(store, redis_client):
    save_session(store, "long", turns=30)
    save_session(store, "as-string", turns=30)
    save_session(store, "as-hash", turns=30)
    redis_client.delete(store.keys.state("as-string"))
    redis_client.set(store.keys.state("as-string"), b"oops")
    redis_client.delete(store.keys.turns("as-hash"))
    redis_client.hset(store.keys.turns("as-hash"), "oops", 1)
    before = redis_contents(redis_client)

    report = compact_oversized(policy())

    assert report.compacted == 1
    assert redis_seqs(store, "long") == list(range(25, 30))
    assert {s["conversation_id"]: s["key"] for s in report.skipped} == {
        "as-string": store.keys.state("as-string"),
        "as-hash": store.keys.turns("as-hash"),
    }
    after = redis_contents(redis_client)
    for key in (store.keys.state("as-string"), store.keys.turns("as-hash")):
        assert after[key.encode()] == before[key.encode()]
    assert report.pruned == 0, "a corrupt session is not a stale index entry"


def test_migration_goes_on_past_a_blob_nested_too_deeply(store, redis_client):
    depth = 100_000
    deep = '{"a":' * depth + "1" + "}" * depth
    redis_client.set(store.keys.legacy("deep"), deep)
    fine = json.dumps({"conversation_id": "fine", "history": [make_turn(0)]})
    redis_client.set(store.keys.legacy("fine"), fine)

    report = compact_oversized(policy(), migrate_legacy=True)

    assert (report.migrated, report.migrated_bytes) == (1, len(fine))
    assert [s["conversation_id"] for s in report.skipped] == ["deep"]
    assert "nested too deeply" in report.skipped[0]["reason"]
    assert redis_client.get(store.keys.legacy("deep")) == deep.encode()
    assert store.load("fine")["_turns"] == 1


def test_a_dry_run_reports_the_legacy_bytes_it_would_move(store, redis_client):
    blob = json.dumps({"conversation_id": "old", "history": []})
    redis_client.set(store.keys.legacy("old"), blob)

    report = plan_compaction(policy(), migrate_legacy=True)

    assert (report.migrated, report.migrated_bytes) == (1, len(blob))
    assert redis_client.get(store.keys.legacy("old")) == blob.encode()


def test_an_idle_session_written_during_its_archive_stays_in_redis(
    store, redis_client, monkeypatch
):
    save_session(store, "c1", turns=5)
    make_idle(store, redis_client, "c1", seconds=3600)
    real_archive = archive.archive_turns

    def archive_while_the_robot_writes(**kwargs):
        store.append_turns("c1", [make_turn(5)])
        real_archive(**kwargs)

    monkeypatch.setattr(archive, "archive_turns", archive_while_the_robot_writes)
    with pytest.raises(SessionBusy, match="written while it was archived"):
        compact_session("c1", policy(idle_archive_after=600))
    make_idle(store, redis_client, "c1", seconds=3600)
    report = compact_oversized(policy(idle_archive_after=600))

    assert redis_seqs(store, "c1")[-2:] == [5, 6]
    assert not ArchivedSession.objects.filter(conversation_id="c1").exists()
    assert report.archived_sessions == 0
    assert "written while it was archived" in report.skipped[0]["reason"]


def test_a_restored_session_expires_like_any_other(store, redis_client):
    save_session(store, "c1", turns=5)
    make_idle(store, redis_client, "c1", seconds=3600)
    compact_session("c1", policy(idle_archive_after=600))

    restore_session("c1", keep_turns=2)

    for key in (store.keys.state("c1"), store.keys.turns("c1")):
        assert store.ttl - 5 < redis_client.ttl(key) <= store.ttl
    digest = redis_client.hget(store.keys.state("c1"), "cfg").decode()
    assert redis_client.ttl(store.keys.bot_config(digest)) > store.ttl - 5


def test_a_database_failure_is_reported_and_the_others_go_on(store, monkeypatch):
    save_session(store, "bad", turns=30)
    save_session(store, "good", turns=30)
    real_add = ArchivedTurn.objects.add_missing

    def archive_but_bad(rows):
        if any(cid == "bad" for cid, *_ in rows):
            raise DatabaseError("database is locked")
        return real_add(rows)

    # The batch's transaction fails; each session is copied again on its own.
    monkeypatch.setattr(ArchivedTurn.objects, "add_missing", archive_but_bad)
    report = compact_oversized(policy())

    assert report.failed == [{"conversation_id": "bad", "error": "database is locked"}]
    assert report.compacted == 1
    assert redis_seqs(store, "bad") == list(range(30))
    assert redis_seqs(store, "good") == list(range(25, 30))


@pytest.fixture
def private_redis(sessions_redis):
    """A Redis server of this test's own, which the test may stop; the store points at it."""
    return sessions_redis()


def test_redis_stopped_mid_compaction_stops_it_with_the_stores_error(private_redis, monkeypatch):
    store = get_store()
    for n in range(3):
        save_session(store, f"long-{n}", turns=30)
    real_archive = archive.archive_many

    def archive_then_redis_dies(copies):
        failures = real_archive(copies)
        private_redis.kill()
        return failures

    monkeypatch.setattr(archive, "archive_many", archive_then_redis_dies)
    with pytest.raises(StoreUnavailable, match="is unreachable"):
        compact_oversized(policy())

    # The first step of each session (7 turns), copied in one transaction, is kept.
    assert ArchivedTurn.objects.count() == 3 * 7, "what was copied before Redis died is kept"


def test_re_encoding_skips_turns_that_cannot_change_and_swaps_those_that_can(store, redis_client):
    save_session(store, "c1", turns=3)
    turns_key = store.keys.turns("c1")
    long_turn = {"role": "user", "content": "a compressible turn " * 400}
    # Written uncompressed, as a store without the compressor would have.
    redis_client.rpush(turns_key, b"3|" + orjson.dumps(long_turn))
    redis_client.hset(store.keys.state("c1"), "seq", 4)
    before = redis_client.lrange(turns_key, 0, 2)

    saved = trimming.reencode_turns(store, "c1")

    assert saved > 0
    assert redis_client.lrange(turns_key, 0, 2) == before
    assert redis_client.lindex(turns_key, 3).startswith(b"3|" + LZ4_MAGIC)
    assert store.load("c1", window=1)["history"] == [{**long_turn, "seq": 3}]


def test_the_compaction_lock_outlives_its_timeout_by_renewal_at_every_batch(
    store, redis_client, settings, caplog
):
    settings.ROBOTPERF_COMPACTION = {**settings.ROBOTPERF_COMPACTION, "LOCK_TIMEOUT": 1}
    # More sessions than a ZSET keeps as a listpack, so the index is scanned in several steps.
    for n in range(300):
        save_session(store, f"s-{n:03d}", turns=1)
    lock_key = settings.ROBOTPERF_LOCKS["KEY_PREFIX"] + COMPACTION_LOCK
    ttls = []

    def slow_progress(scanned):
        ttls.append(redis_client.pttl(lock_key))
        time.sleep(0.4)

    started = time.monotonic()
    report = compact_oversized(policy(batch_size=50), progress=slow_progress)

    assert report.scanned == 300
    assert time.monotonic() - started > 1.5, "the run outlasted the lock's 1 s timeout"
    assert len(ttls) >= 4
    assert min(ttls) > 700, f"the lock was not renewed at each batch: {ttls} ms left"
    assert not redis_client.exists(lock_key), "released by its owner at the end"
    assert "expired before the run ended" not in caplog.text


def test_a_restore_of_more_than_a_thousand_turns_puts_each_back_once(store, redis_client):
    history = save_session(store, "c1", turns=2501)
    make_idle(store, redis_client, "c1", seconds=3600)
    compact_session("c1", policy(idle_archive_after=600))
    assert store.load("c1") is None

    assert restore_session("c1", keep_turns=2501) == 2501

    assert redis_seqs(store, "c1") == list(range(2501))
    loaded = store.load("c1", window=None)["history"]
    assert [{k: v for k, v in t.items() if k != "seq"} for t in loaded] == history
    measured = stored_bytes(redis_client, store, "c1")
    assert int(state(store, "c1")[b"bytes"]) == measured
    assert redis_client.zscore(store.keys.index_bytes, "c1") == measured


def test_turns_appended_between_a_batchs_copy_and_removal_stay_in_redis(store, monkeypatch):
    for cid in ("c1", "c2", "c3"):
        save_session(store, cid, turns=30)
    real_archive = archive.archive_many

    def archive_while_the_robot_writes(copies):
        failures = real_archive(copies)
        for copy in copies:
            store.append_turns(copy.conversation_id, [make_turn(100)])
        return failures

    monkeypatch.setattr(archive, "archive_many", archive_while_the_robot_writes)
    report = compact_oversized(policy(batch_size=500))

    assert report.compacted == 3
    for cid in ("c1", "c2", "c3"):
        assert redis_seqs(store, cid) == [*range(25, 30), 30]
        assert archived_seqs(cid) == list(range(25))
        measured = stored_bytes(store.client, store, cid)
        assert store.client.zscore(store.keys.index_bytes, cid) == measured, "index exact"
