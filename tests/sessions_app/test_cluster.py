"""The project on a local Redis Cluster (3 primaries, 3 replicas): the admin's pages and actions,
the commands, a Celery task in a worker, and trims and compactions racing appends.

Every test here runs with the cache aliases, the store and the locks on the run's cluster
(`on_cluster`, tests/conftest.py); the conversations spread over its three primaries.
"""

import json
import threading
from io import StringIO

import pytest
import redis
import redis.cluster
from celery.contrib.testing.worker import start_worker
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.management import call_command

from convstore import disable_slow_log
from locks import exclusive
from robotperf import health
from robotperf.celery import app
from sessions_app import maintenance, slow_calls
from sessions_app.models import ArchivedTurn
from sessions_app.services import CompactionPolicy, compact_session, trim_history
from tests.sessions_app.admin_pages import BIG, url
from tests.sessions_app.factories import make_turn, save_session

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("on_cluster")]


@pytest.fixture
def spread(store, on_cluster):
    """The admin's sessions (tests/sessions_app/admin_pages.py), on all three primaries."""
    save_session(store, BIG, turns=300, size=20, bot_id="bot-big")
    for n in range(12):
        save_session(store, f"small-{n:02d}", turns=5 + n, bot_id="bot-a" if n % 2 else "bot-b")
    nodes = {
        on_cluster.get_node_from_key(store.keys.state(f"small-{n:02d}")).name for n in range(12)
    }
    assert len(nodes) == 3
    return store


@pytest.fixture
def oversized(settings):
    settings.ROBOTPERF_COMPACTION = {**settings.ROBOTPERF_COMPACTION, "MAX_TURNS": 100}


def test_the_store_is_built_on_the_cluster(store, on_cluster):
    assert store.client is on_cluster
    assert "(cluster)" in store.url


def test_the_admin_pages_read_a_cluster(admin_client, spread, oversized):
    assert admin_client.get(url("dashboard")).status_code == 200

    def ids(query=""):
        rows = admin_client.get(url("changelist") + query).context["page"].rows
        return [row.conversation_id for row in rows]

    assert ids()[0] == BIG
    assert ids("?sort=turns")[:2] == [BIG, "small-11"]
    assert ids("?oversized=1") == [BIG]
    digest = spread.client.hget(spread.keys.state("small-01"), "cfg").decode()
    assert sorted(ids(f"?bot={digest}")) == [f"small-{n:02d}" for n in range(1, 12, 2)]
    assert ids("?q=small-1") == ["small-11", "small-10"]
    detail = admin_client.get(url("change", BIG)).context["detail"].parts
    assert detail.turns == 300


def test_the_admin_actions_on_a_cluster(admin_client, spread, oversized):
    response = admin_client.post(url("trim", BIG), {"keep": 10, "pinned": 0}, follow=True)
    assert response.status_code == 200
    assert spread.client.llen(spread.keys.turns(BIG)) == 10
    assert ArchivedTurn.objects.filter(conversation_id=BIG).count() == 290

    assert admin_client.post(url("compact", "small-11"), follow=True).status_code == 200
    response = admin_client.post(url("delete", "small-03"), {"discard": "on"}, follow=True)
    assert response.status_code == 200
    assert spread.load("small-03") is None
    assert spread.client.zscore(spread.keys.index_bytes, "small-03") is None


def test_a_login_session_lives_on_the_cluster(client, on_cluster):
    get_user_model().objects.create_user("staff", password="pw", is_staff=True)

    assert client.login(username="staff", password="pw")
    assert client.get("/admin/").status_code == 200
    key = caches["default"].make_key(f"django.contrib.sessions.cache{client.session.session_key}")
    assert on_cluster.exists(key)


def test_compact_sessions_and_session_stats(spread, on_cluster):
    spread.client.set("session:old", json.dumps({"history": [{"role": "user"}]}))
    spread.client.delete(spread.keys.index_bytes, spread.keys.index_seen)

    out = StringIO()
    call_command(
        "compact_sessions",
        "--rebuild-indexes",
        "--migrate-legacy",
        "--max-turns=100",
        "--keep-turns=20",
        "--format=json",
        stdout=out,
    )
    report = json.loads(out.getvalue())
    assert report["indexes"]["missing"] == 13
    assert report["migrated"] == 1
    assert report["legacy_left"] == 0
    assert report["compacted"] == 1
    assert spread.client.llen(spread.keys.turns(BIG)) == 20

    out = StringIO()
    call_command("session_stats", "--format=json", stdout=out)
    stats = json.loads(out.getvalue())
    assert stats["count"] == 14
    per_bot = {bot: count for bot, count, _ in stats["per_bot"]}
    assert per_bot["bot-a"] == 6


def test_a_celery_task_in_a_worker_compacts_the_cluster(spread, celery_queue, settings):
    settings.ROBOTPERF_COMPACTION = {
        **settings.ROBOTPERF_COMPACTION,
        "MAX_TURNS": 100,
        "KEEP_TURNS": 20,
    }
    with start_worker(
        app, pool="threads", concurrency=1, queues=[celery_queue], perform_ping_check=False
    ):
        result = app.send_task(
            "sessions_app.tasks.compact_oversized_sessions", queue=celery_queue
        ).get(timeout=60)

    assert result["compacted"] == 1
    assert spread.client.llen(spread.keys.turns(BIG)) == 20


def test_the_job_lock_is_held_on_the_cluster(on_cluster):
    with exclusive("cluster-test", timeout=30):
        assert on_cluster.exists("rp:lock:cluster-test")
    assert not on_cluster.exists("rp:lock:cluster-test")


def test_trims_and_compactions_racing_appends_count_every_turn(store):
    cids = [f"race-{n}" for n in range(3)]
    for cid in cids:
        save_session(store, cid, turns=60)
    policy = CompactionPolicy(max_bytes=10**9, max_turns=10, keep_turns=5, batch_size=7)
    appended = {cid: [] for cid in cids}

    def append(cid):
        for n in range(60, 120):
            appended[cid].extend(store.append_turns(cid, [make_turn(n)]))

    def operate(cid):
        for _ in range(3):
            trim_history(cid, keep=3, batch_size=5)
            compact_session(cid, policy)

    threads = [
        threading.Thread(target=job, args=(cid,)) for cid in cids for job in (append, operate)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    for cid in cids:
        assert appended[cid] == list(range(60, 120))
        in_redis = {t["seq"] for t in maintenance.snapshot(store, cid).session["history"]}
        archived = set(
            ArchivedTurn.objects.filter(conversation_id=cid).values_list("seq", flat=True)
        )
        assert not in_redis & archived
        assert sorted(in_redis | archived) == list(range(120))


def test_readyz_asks_the_cluster_whether_it_is_ok(settings):
    health.check_redis(1)  # the cluster is ok: no error
    settings.CACHES = {
        **settings.CACHES,
        "sessions": {**settings.CACHES["sessions"], "LOCATION": "redis://127.0.0.1:1"},
    }
    with pytest.raises(redis.ConnectionError):
        health.check_redis(1)


def test_the_slow_call_log_is_written_to_the_cluster(store, settings):
    settings.SLOW_CALL_LOG = True
    settings.SLOW_CALL_THRESHOLD_MS = 0
    slow_log = slow_calls.enable_from_settings()
    try:
        save_session(store, "slow-1", turns=3)
        store.load("slow-1")
    finally:
        disable_slow_log()

    assert isinstance(slow_log.client, redis.cluster.RedisCluster)
    logged = {(call.call, call.conversation_id) for call in slow_calls.slow_calls()}
    assert ("robot-v2.load-conversation", "slow-1") in logged
