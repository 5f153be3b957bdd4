"""One bad value among good sessions, for each kind a production Redis has shown: every admin page
renders and marks it, `compact_sessions`, `session_stats` and the Celery jobs report it by its
key and go on with the good sessions, and the bad value is still in Redis as it was. The admin's
census is the exception: its keys are its own, and it heals them.

The Celery jobs are called in this process (the code a worker runs); test_tasks.py runs them in a
real worker.
"""

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from convstore.exceptions import CorruptSession
from sessions_app import census, services, tasks
from sessions_app.compaction import CompactionPolicy
from sessions_app.models import ArchivedSession, ArchivedTurn
from sessions_app.store import get_store
from tests.sessions_app.factories import save_session
from tests.sessions_app.stores import AsyncStoreFromThreads
from tests.sessions_app.test_commands import run
from tests.sessions_app.test_store import every_key

pytestmark = pytest.mark.django_db

BAD, BAD_LEGACY = "bad", "bad-legacy"
JOBS = ("stats", "command", "task")


def url(view, *args):
    name = f"admin:sessions_app_conversationsession_{view}"
    return reverse(name, args=[quote(a) for a in args])


@dataclass(frozen=True)
class Corruption:
    plant: Callable
    """(store) -> the key of the bad value, written among good sessions."""
    value: Callable
    """(store) -> the bad value as Redis holds it, compared before and after; for the census's
    own keys, which heal: whether it is healed."""
    cid: str | None = BAD
    """The conversation the bad value belongs to, saved first (oversized) if it is BAD."""
    reported_by: tuple = JOBS
    heals: bool = False
    shown: bool = True
    """Whether a page names the bad key (an unreadable census summary is counted again)."""
    rebuilt: bool = False
    """Whether the scheduled compaction's rebuild of the indexes sets the bad value again from
    the state hash (a size score: the index is derived from the hashes)."""


def _state_field(name, raw):
    def plant(store):
        store.client.hset(store.keys.state(BAD), name, raw)
        return store.keys.state(BAD)

    return plant


def _whole_bad_session(store):
    return store.client.hgetall(store.keys.state(BAD)), store.client.lrange(
        store.keys.turns(BAD), 0, -1
    )


def _index_member(member):
    def plant(store):
        store.client.zadd(store.keys.index_bytes, {member: 100})
        return store.keys.index_bytes

    return plant


def _member_score(member):
    return lambda store: store.client.zscore(store.keys.index_bytes, member)


def _index_of_another_type(name):
    def plant(store):
        key = getattr(store.keys, name)
        store.client.delete(key)
        store.client.set(key, b"not a sorted set")
        return key

    return plant


def _raw(name):
    return lambda store: store.client.get(getattr(store.keys, name))


def _census_summary(raw):
    def plant(store):
        store.client.set(store.keys.census("summary"), raw)
        return store.keys.census("summary")

    return plant


def _census_set_of_another_type(store):
    census.build(store, CompactionPolicy.from_settings())
    key = store.keys.census("turns")
    store.client.delete(key)
    store.client.set(key, b"not a sorted set")
    return key


def _census_healed(store):
    counted = census.read(store)
    kinds = {store.client.type(store.keys.census(name)) for name in ("ids", "turns")}
    return counted is not None and counted.sessions >= 2 and kinds == {b"zset"}


def _score(name, score):
    def plant(store):
        store.client.zadd(getattr(store.keys, name), {BAD: score})
        return getattr(store.keys, name)

    return plant


def _bad_score(name):
    return lambda store: store.client.zscore(getattr(store.keys, name), BAD)


def _ttl_of_years(store):
    for key in (store.keys.state(BAD), store.keys.turns(BAD)):
        store.client.expire(key, 10**12)
    return store.keys.state(BAD)


def _bot_config_of_another_type(store):
    # A bot_config of its own, which no earlier load cached in this process.
    save_session(store, BAD, turns=30, bot_id=f"bot-{uuid.uuid4().hex}")
    key = store.keys.bot_config(store.client.hget(store.keys.state(BAD), "cfg").decode())
    store.client.delete(key)
    store.client.hset(key, "not", "a bot_config")
    return key


def _bot_config_value(store):
    key = store.keys.bot_config(store.client.hget(store.keys.state(BAD), "cfg").decode())
    return store.client.hgetall(key)


def _legacy(value):
    def plant(store):
        key = store.keys.legacy(BAD_LEGACY)
        if isinstance(value, list):
            store.client.rpush(key, *value)
        else:
            store.client.set(key, value)
        return key

    return plant


def _legacy_value(store):
    key = store.keys.legacy(BAD_LEGACY)
    if store.client.type(key) == b"list":
        return store.client.lrange(key, 0, -1)
    return store.client.get(key)


def _without_bytes(store):
    store.client.hdel(store.keys.state(BAD), "bytes")
    return store.keys.state(BAD)


JOBS_THAT_SCAN = ("command", "task")
CORRUPTIONS = {
    "state field name not UTF-8": Corruption(
        _state_field(b"s:\xff\xfe", b"1"), _whole_bad_session, reported_by=JOBS_THAT_SCAN
    ),
    "bot_config digest not UTF-8": Corruption(_state_field("cfg", b"\xff\xfe"), _whole_bad_session),
    "size index member not UTF-8": Corruption(
        _index_member(b"\xff\xfe"), _member_score(b"\xff\xfe"), cid=None
    ),
    "size index member empty": Corruption(_index_member(b""), _member_score(b""), cid=None),
    "size index member with braces": Corruption(
        _index_member(b"x{y}"), _member_score(b"x{y}"), cid=None
    ),
    "size index of another type": Corruption(
        _index_of_another_type("index_bytes"), _raw("index_bytes"), cid=None
    ),
    "seen index of another type": Corruption(
        _index_of_another_type("index_seen"), _raw("index_seen"), cid=None
    ),
    "census summary not JSON": Corruption(
        _census_summary(b"{not json"),
        _census_healed,
        cid=None,
        reported_by=(),
        heals=True,
        shown=False,
    ),
    "census summary of another shape": Corruption(
        _census_summary(orjson.dumps({"bots": 5})),
        _census_healed,
        cid=None,
        reported_by=(),
        heals=True,
        shown=False,
    ),
    "census set of another type": Corruption(
        _census_set_of_another_type, _census_healed, cid=None, reported_by=(), heals=True
    ),
    "seen score 1e300": Corruption(
        _score("index_seen", 1e300), _bad_score("index_seen"), reported_by=JOBS_THAT_SCAN
    ),
    "seen score -inf": Corruption(
        _score("index_seen", float("-inf")), _bad_score("index_seen"), reported_by=JOBS_THAT_SCAN
    ),
    "TTL of years": Corruption(
        _ttl_of_years,
        lambda store: store.client.ttl(store.keys.state(BAD)) > 10**12 - 3600,
        reported_by=(),  # a value Redis allows: only shown, never a problem to report
    ),
    "size score inf": Corruption(
        _score("index_bytes", float("inf")),
        _bad_score("index_bytes"),
        reported_by=("stats", "command"),
        rebuilt=True,
    ),
    "bot_config of another type": Corruption(
        _bot_config_of_another_type, _bot_config_value, reported_by=("stats",)
    ),
    "legacy key of another type": Corruption(
        _legacy([b"a list"]), _legacy_value, cid=BAD_LEGACY, reported_by=("stats", "command")
    ),
    "legacy history not a list": Corruption(
        _legacy(json.dumps({"bot_id": "b", "history": "hello"})),
        _legacy_value,
        cid=BAD_LEGACY,
        reported_by=("command",),
    ),
    "legacy history of non-objects": Corruption(
        _legacy(json.dumps({"bot_id": "b", "history": [{"role": "user"}, 1, "two", None]})),
        _legacy_value,
        cid=BAD_LEGACY,
        reported_by=("command",),
    ),
    "bytes field missing": Corruption(
        _without_bytes, _whole_bad_session, reported_by=JOBS_THAT_SCAN
    ),
    "seq negative": Corruption(
        _state_field("seq", b"-3"), _whole_bad_session, reported_by=JOBS_THAT_SCAN
    ),
    "seq huge": Corruption(
        _state_field("seq", b"100000000000000000000"),
        _whole_bad_session,
        reported_by=JOBS_THAT_SCAN,
    ),
}


@pytest.fixture
def good_sessions(store, settings):
    settings.ROBOTPERF_COMPACTION = {
        **settings.ROBOTPERF_COMPACTION,
        "MAX_TURNS": 20,
        "KEEP_TURNS": 5,
        "BATCH_SIZE": 50,
        "IDLE_ARCHIVE_AFTER": 3600,  # a bad time must never make a session idle
    }
    save_session(store, "good-long", turns=30, bot_id="bot-good")
    save_session(store, "good-short", turns=3, bot_id="bot-good")
    return store


def _good_legacy_blob(store):
    blob = {"conversation_id": "good-legacy", "bot_id": "bot-old", "history": [{"r": 1}] * 3}
    store.client.set(store.keys.legacy("good-legacy"), json.dumps(blob))


def _pages(admin_client, store, cid):
    """Every admin page over these sessions, as the operator would open them."""
    digest = store.client.hget(store.keys.state("good-long"), "cfg").decode()
    addresses = [
        url("dashboard"),
        url("changelist"),
        url("changelist") + "?sort=turns",
        url("changelist") + "?sort=seen&order=asc",
        url("changelist") + "?oversized=1",
        url("changelist") + f"?bot={digest}",
        url("changelist") + "?q=good",
        *(url("change", good) for good in ("good-long", "good-short")),
    ]
    if cid:
        addresses += [
            url("changelist") + f"?q={cid}",
            url("change", cid),
            url("profile", cid),
            url("delete", cid),
        ]
    pages = {address: admin_client.get(address) for address in addresses}
    for profiled in (cid or "good-long", "good-long"):
        address = url("profile", profiled)
        pages[f"POST {address}"] = admin_client.post(address, {"runs": 2, "window": 2})
    return pages


def _reported(report):
    return json.dumps([report.get("skipped"), report.get("bad_entries")])


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_one_bad_value_among_good_sessions(name, good_sessions, admin_client):
    store, corruption = good_sessions, CORRUPTIONS[name]
    if corruption.cid == BAD:
        save_session(store, BAD, turns=30, bot_id="bot-bad")
    _good_legacy_blob(store)
    bad_key = corruption.plant(store)
    before = corruption.value(store)

    pages = _pages(admin_client, store, corruption.cid)
    for address, response in pages.items():
        assert response.status_code == 200, address
    html = {address: response.content.decode() for address, response in pages.items()}
    for good in ("good-long", "good-short"):
        assert 'id="parts"' in html[url("change", good)], good
        assert any(good in page for address, page in html.items() if "?" in address), good
    if corruption.shown:
        assert any(bad_key in page for page in html.values()), "the bad key is shown"

    stats = json.loads(run("session_stats", "--format", "json"))
    command = json.loads(run("compact_sessions", "--migrate-legacy", "--format", "json"))
    if not corruption.heals:
        assert corruption.value(store) == before, "left as it was by the pages and the command"
    task = tasks.compact_oversized_sessions()
    counted = tasks.count_sessions_for_admin()

    # The good sessions are counted, compacted and migrated...
    assert {"good-long", "good-short"} <= {cid for cid, _ in stats["largest"]}
    assert ArchivedTurn.objects.filter(conversation_id="good-long").count() == 25
    assert store.client.llen(store.keys.turns("good-long")) == 5
    assert store.load("good-legacy")["_rev"] == 0
    assert store.client.exists(store.keys.state("good-legacy"))
    assert command["failed"] == task["failed"] == []
    assert task["scanned"] >= 3
    assert counted["sessions"] >= 3
    # ... the bad value is reported by its key ...
    reports = {"stats": json.dumps(stats["corrupt"]), "command": _reported(command)}
    reports["task"] = _reported(task)
    for job in corruption.reported_by:
        assert bad_key in reports[job], job
    # ... and it is still there, as it was; the census heals its own keys.
    if corruption.heals:
        assert corruption.value(store)
    elif corruption.rebuilt:
        assert corruption.value(store) == int(store.client.hget(store.keys.state(BAD), "bytes"))
    else:
        assert corruption.value(store) == before

    if corruption.cid:  # an explicit delete archives the session, or refuses naming the key
        page = admin_client.post(url("delete", corruption.cid), {}, follow=True)
        assert page.status_code == 200
        if ArchivedSession.objects.filter(conversation_id=corruption.cid).exists():
            assert not store.client.exists(store.keys.state(corruption.cid))
        else:
            assert bad_key in page.content.decode()
            assert corruption.value(store) == before


# --- a counter no write may trust ---------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "raw"),
    [("seq", b"-3"), ("seq", b"100000000000000000000"), ("seq", None), ("bytes", None)],
    ids=["negative seq", "huge seq", "no seq", "no bytes"],
)
def test_a_write_refuses_a_counter_it_cannot_trust_and_changes_nothing(
    store, redis_client, field, raw
):
    """Before, an append numbered its turns from -3 (no reader could split them again), or
    from 0 over turns already stored, and a missing bytes count went negative on a trim."""
    save_session(store, BAD, turns=3)
    state_key = store.keys.state(BAD)
    if raw is None:
        redis_client.hdel(state_key, field)
    else:
        redis_client.hset(state_key, field, raw)
    before = every_key(redis_client)
    writes = {
        "append": lambda: store.append_turns(BAD, [{"role": "user", "content": "new"}]),
        "update": lambda: store.update_state(BAD, {"mood": "happy"}, expected_rev=1),
        "save": lambda: store.save({"conversation_id": BAD, "history": [{"role": "user"}]}),
    }
    for name, write in writes.items():
        with pytest.raises(CorruptSession, match=rf"{re.escape(state_key)}.*'{field}'"):
            write()
        assert every_key(redis_client) == before, name
    if field == "seq":
        with pytest.raises(CorruptSession, match=r"'seq' is not an integer from 0 to 2\*\*53"):
            store.load(BAD)


@pytest.mark.parametrize(
    "member", [b"\xff\xfe", b"", b"x{y}"], ids=["not UTF-8", "empty", "braces"]
)
def test_a_rebuild_of_the_indexes_leaves_a_bad_member_for_an_operator(store, member):
    save_session(store, "good", turns=3)
    store.client.zadd(store.keys.index_bytes, {member: 100})

    assert services.rebuild_indexes() == {"indexed": 1, "missing": 0, "pruned": 0}
    assert store.client.zscore(store.keys.index_bytes, member) == 100


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("field", "raw", "reason"),
    [
        (b"s:\xff\xfe", b"1", r"a state field name is not UTF-8: b's:\\xff\\xfe'"),
        (b"p:1:r\xff", b"1", r"a state field name is not UTF-8: b'p:1:r\\xff'"),
        (b"cfg", b"\xff\xfe", r"field 'cfg' is not UTF-8 text: b'\\xff\\xfe'"),
    ],
    ids=["field name", "sub-key field name", "bot_config digest"],
)
def test_a_state_that_is_not_utf8_loads_as_corrupt(redis_client, kind, field, raw, reason):
    """Before, `load` raised UnicodeDecodeError, which names no key."""
    sync = get_store()
    save_session(sync, BAD, turns=3)
    redis_client.hset(sync.keys.state(BAD), field, raw)
    store = sync if kind == "sync" else AsyncStoreFromThreads()
    try:
        with pytest.raises(CorruptSession, match=re.escape(sync.keys.state(BAD)) + ".*" + reason):
            store.load(BAD)
    finally:
        if kind == "async":
            store.close()
    assert redis_client.hget(sync.keys.state(BAD), field) == raw
