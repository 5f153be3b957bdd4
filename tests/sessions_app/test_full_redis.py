"""Redis full (``maxmemory`` with ``noeviction``), on a server of the test's own: a write Redis
refuses is StoreFull with nothing written, not even to the indexes, and the operator can still
free memory by trimming, compacting and deleting."""

import json

import orjson
import pytest

from convstore.exceptions import StoreFull
from sessions_app import actions
from sessions_app.compaction import CompactionPolicy
from sessions_app.models import ArchivedSession, ArchivedTurn
from sessions_app.services import compact_oversized, compact_session, trim_history
from sessions_app.store import get_store
from tests.sessions_app.factories import make_turn, redis_contents, save_session
from tests.sessions_app.stores import store_of_kind

pytestmark = pytest.mark.django_db


@pytest.fixture
def full_redis(sessions_redis):
    """A Redis holding three sessions of 60 turns whose ``maxmemory`` is then set to half of
    what it uses: it refuses every write that may grow it, whatever else happens meanwhile."""
    server = sessions_redis("--maxmemory-policy", "noeviction")
    store = get_store()
    for cid in ("c1", "c2", "c3"):
        save_session(store, cid, turns=60, size=100)
    client = server.client()
    # A legacy blob to migrate, and a turn written uncompressed that compaction would re-encode.
    client.set(store.keys.legacy("old"), json.dumps({"history": [{"role": "user"}] * 30}))
    client.rpush(store.keys.turns("c2"), b"60|" + orjson.dumps(make_turn(60, size=2000)))
    client.hset(store.keys.state("c2"), "seq", 61)
    client.config_set("maxmemory", client.info("memory")["used_memory"] // 2)
    yield client
    client.close()


@pytest.fixture(params=["sync", "async"])
def full_store(request, full_redis):
    with store_of_kind(request.param) as store:
        yield store


def everything(client):
    """Every key of the store, with its contents and the indexes' scores."""
    return redis_contents(client, "rp:*")


WRITES = {
    "append": lambda store: store.append_turns("c1", [make_turn(60, size=50)]),
    "update_state": lambda store: store.update_state(
        "c1", {"record": {"big": "y" * 200_000}}, expected_rev=1
    ),
    "save anew": lambda store: store.save(
        {"conversation_id": "new", "bot_id": "b", "history": [make_turn(0, size=50)]}
    ),
    "save of a loaded dict": lambda store: store.save(
        {**store.load("c1"), "history": [make_turn(60, size=50)]}
    ),
}


@pytest.mark.parametrize("write", WRITES)
def test_a_write_refused_for_memory_is_store_full_and_writes_nothing(full_redis, full_store, write):
    before = everything(full_redis)

    with pytest.raises(StoreFull, match=r"Redis is full .* nothing was written"):
        WRITES[write](full_store)

    assert everything(full_redis) == before


def test_a_trim_frees_memory_when_redis_is_full(full_redis):
    store = get_store()
    before = full_redis.memory_usage(store.keys.turns("c1"))

    result = trim_history("c1", keep=5)

    assert result.turns_archived == 55
    assert full_redis.llen(store.keys.turns("c1")) == 5
    assert ArchivedTurn.objects.filter(conversation_id="c1").count() == 55
    assert full_redis.memory_usage(store.keys.turns("c1")) < before / 5
    assert full_redis.hget(store.keys.state("c1"), "archived") == b"55"


def test_a_compaction_frees_memory_when_redis_is_full(full_redis):
    store = get_store()
    policy = CompactionPolicy(max_bytes=10**9, max_turns=10, keep_turns=5)

    result = compact_session("c2", policy)

    assert result.turns_archived == 56
    assert [turn["seq"] for turn in store.load("c2", window=None)["history"]] == list(range(61))


def test_a_compaction_run_on_a_full_redis_frees_what_it_can_and_reports_the_rest(full_redis):
    store = get_store()
    policy = CompactionPolicy(max_bytes=10**9, max_turns=10, keep_turns=5)

    report = compact_oversized(policy, migrate_legacy=True)

    assert report.compacted == 3
    assert [full_redis.llen(store.keys.turns(cid)) for cid in ("c1", "c2", "c3")] == [5, 5, 5]
    assert [s["conversation_id"] for s in report.skipped] == ["old"]
    assert "Redis is full" in report.skipped[0]["reason"]
    assert full_redis.exists(store.keys.legacy("old"))
    assert full_redis.lindex(store.keys.turns("c2"), -1).startswith(b"60|{"), "re-encode waits"


def test_the_admin_can_trim_and_delete_when_redis_is_full(full_redis):
    store = get_store()

    trimmed = actions.trim_session("c1", keep=10)
    deleted = actions.delete_session("c3")

    assert (trimmed.turns_kept, trimmed.turns_archived) == (10, 50)
    assert deleted.action == "archived"
    assert not full_redis.exists(store.keys.state("c3"), store.keys.turns("c3"))
    assert ArchivedSession.objects.filter(conversation_id="c3").exists()
    assert ArchivedTurn.objects.filter(conversation_id="c3").count() == 60


def test_writes_work_again_once_redis_has_room(full_redis, full_store):
    with pytest.raises(StoreFull, match="Redis is full"):
        WRITES["append"](full_store)
    full_redis.config_set("maxmemory", 0)

    assert full_store.append_turns("c1", [make_turn(60)]) == [60]
