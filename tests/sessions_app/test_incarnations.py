"""A conversation id that leaves Redis (deleted, expired, lost with Redis) and is saved again is a
new incarnation: its turns are never dropped, overwritten or mixed with the archived ones of the
id's earlier life, and an archived life is never restored over a live one."""

import time

import pytest

from convstore.exceptions import ArchiveConflict, SessionExists
from convstore.keys import INC
from sessions_app import archive, trimming
from sessions_app.models import ArchivedSession, ArchivedTurn
from sessions_app.services import (
    CompactionPolicy,
    compact_oversized,
    compact_session,
    restore_session,
    trim_history,
)
from sessions_app.store import SessionBusy

pytestmark = pytest.mark.django_db


def save(store, cid, tag, turns):
    """A conversation whose turns say which life of the id they belong to: ``tag-<n>``."""
    store.save(
        {
            "conversation_id": cid,
            "bot_id": "bot-a",
            "record": {"LOOP_COUNT": {}},
            "bot_config": {"scenario": "s"},
            "history": [{"role": "user", "content": f"{tag}-{n}"} for n in range(turns)],
        }
    )


def contents(store, cid):
    return [turn["content"] for turn in store.load(cid, window=None)["history"]]


def archived(cid):
    rows = ArchivedTurn.objects.filter(conversation_id=cid).order_by("incarnation", "seq")
    return sorted(row.turn["content"] for row in rows)


def incarnation(store, cid):
    return store.client.hget(store.keys.state(cid), INC).decode()


def idle(store, cid):
    """Compaction's policy (``policy(idle_archive_after=60)``) then finds ``cid`` idle: its
    last write an hour ago, whatever the machine's speed."""
    store.client.zadd(store.keys.index_seen, {cid: time.time() - 3600})
    return policy(idle_archive_after=60)


def policy(**overrides):
    values = {"max_bytes": 10_000_000, "max_turns": 5, "keep_turns": 2, "batch_size": 4}
    return CompactionPolicy(**{**values, **overrides})


def test_a_creation_starts_an_incarnation_and_a_replace_keeps_it(store):
    save(store, "c1", "old", 3)
    first = incarnation(store, "c1")
    save(store, "c1", "replaced", 3)

    assert len(first) == 16
    assert incarnation(store, "c1") == first


@pytest.mark.parametrize("leave", ["delete", "flush", "expire"])
def test_an_id_saved_again_after_it_left_redis_loses_no_turn(store, redis_client, leave):
    save(store, "c1", "old", 10)
    trim_history("c1", keep=2)
    old = incarnation(store, "c1")
    if leave == "delete":
        store.delete("c1")
    elif leave == "flush":  # Redis restarted empty
        redis_client.flushdb()
    else:
        for key in (store.keys.state("c1"), store.keys.turns("c1")):
            redis_client.pexpire(key, 1)
        time.sleep(0.01)

    save(store, "c1", "new", 10)
    if leave == "expire":
        report = compact_oversized(policy())
        assert report.compacted == 1
    else:
        trim_history("c1", keep=2)

    new = [f"new-{n}" for n in range(10)]
    assert incarnation(store, "c1") != old
    assert contents(store, "c1") == new, "the new life, every turn once, none of the old"
    assert archived("c1") == sorted([f"old-{n}" for n in range(8)] + new[:8])


def test_a_trim_racing_a_re_creation_removes_nothing_of_the_new_life(store, monkeypatch):
    save(store, "c1", "old", 10)
    real_archive = archive.archive_many

    def archive_while_the_id_is_re_created(copies):
        failures = real_archive(copies)
        store.delete("c1")
        save(store, "c1", "new", 10)
        return failures

    monkeypatch.setattr(archive, "archive_many", archive_while_the_id_is_re_created)
    result = trim_history("c1", keep=2, batch_size=100)

    assert result.turns_archived == 0
    assert contents(store, "c1") == [f"new-{n}" for n in range(10)]
    assert archived("c1") == sorted(f"old-{n}" for n in range(8))


def test_an_idle_archive_racing_a_re_creation_drops_nothing_of_the_new_life(
    store, redis_client, monkeypatch
):
    save(store, "c1", "old", 3)
    real_archive = archive.archive_turns

    def archive_while_the_id_is_re_created(**kwargs):
        real_archive(**kwargs)
        store.delete("c1")
        save(store, "c1", "new", 3)  # the same rev and next seq as the life being archived

    monkeypatch.setattr(archive, "archive_turns", archive_while_the_id_is_re_created)
    with pytest.raises(SessionBusy, match="written while it was archived"):
        compact_session("c1", idle(store, "c1"))

    assert contents(store, "c1") == ["new-0", "new-1", "new-2"]
    assert not ArchivedSession.objects.filter(conversation_id="c1").exists()


def test_archived_lives_of_one_id_are_kept_apart_and_restored_one_at_a_time(store):
    save(store, "c1", "first", 3)
    compact_session("c1", idle(store, "c1"))
    save(store, "c1", "second", 4)
    compact_session("c1", idle(store, "c1"))

    lives = ArchivedSession.objects.filter(conversation_id="c1").order_by("archived_at", "pk")
    assert lives.count() == 2
    first, second = lives
    restore_session("c1", incarnation=first.incarnation)

    assert contents(store, "c1") == ["first-0", "first-1", "first-2"]
    assert ArchivedSession.objects.get(conversation_id="c1").incarnation == second.incarnation


def test_restore_over_a_live_re_created_session_is_refused_and_both_are_kept(store):
    save(store, "c1", "old", 3)
    compact_session("c1", idle(store, "c1"))
    save(store, "c1", "new", 2)

    with pytest.raises(SessionExists, match="is live in Redis again"):
        restore_session("c1")

    assert contents(store, "c1") == ["new-0", "new-1"]
    row = ArchivedSession.objects.get(conversation_id="c1")
    assert archive.archived_turns("c1", row.incarnation) == [
        {"role": "user", "content": f"old-{n}", "seq": n} for n in range(3)
    ]


def test_an_archive_holding_other_turns_under_the_same_seqs_is_a_conflict_that_moves_nothing(
    store, redis_client
):
    """Sessions from before incarnations share the empty one: a re-creation then could only be
    told apart by the turns themselves, so the archive compares them."""
    save(store, "c1", "old", 6)
    redis_client.hdel(store.keys.state("c1"), INC)
    trim_history("c1", keep=2)
    store.delete("c1")
    save(store, "c1", "new", 6)
    redis_client.hdel(store.keys.state("c1"), INC)
    items = redis_client.lrange(store.keys.turns("c1"), 0, -1)

    with pytest.raises(ArchiveConflict, match=r"other turns under seq 0, 1, 2, 3; they stay"):
        trim_history("c1", keep=2)

    assert redis_client.lrange(store.keys.turns("c1"), 0, -1) == items
    assert archived("c1") == sorted(f"old-{n}" for n in range(4))


def test_a_repeated_copy_of_the_same_turns_is_no_conflict(store):
    save(store, "c1", "only", 6)
    inc, turns = trimming.trim_candidates(store, "c1", keep=2, pinned=0, batch=10, below=10)
    archive.archive_turns(conversation_id="c1", incarnation=inc, turns=turns)

    result = trim_history("c1", keep=2)

    assert result.turns_archived == 4
    assert contents(store, "c1") == [f"only-{n}" for n in range(6)]
