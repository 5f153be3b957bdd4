"""Trim, compaction and idle archive racing each other: threads, and two processes.

Invariant 1 of the design: every turn, and a session archived whole, is always somewhere.
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections

from locks import LockHeld, exclusive
from sessions_app import maintenance, services
from sessions_app.models import ArchivedSession, ArchivedTurn
from sessions_app.services import (
    COMPACTION_LOCK,
    CompactionPolicy,
    SessionBusy,
    compact_oversized,
    compact_session,
    restore_session,
    session_guard,
    trim_history,
)
from sessions_app.store import SessionNotFound
from tests.sessions_app.factories import make_turn, save_session

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--max-turns", "10", "--keep-turns", "5"]
IDLE = CompactionPolicy(max_bytes=10**9, max_turns=10**6, keep_turns=10, idle_archive_after=1)

pytestmark = pytest.mark.django_db(transaction=True)


def make_idle(store, cid):
    store.client.zadd(store.keys.index_seen, {cid: time.time() - 100})


def race(target, args_list):
    """Run ``target`` once per args in threads released together; each outcome or error."""
    barrier = threading.Barrier(len(args_list))
    outcomes = [None] * len(args_list)

    def run(i, args):
        barrier.wait()
        try:
            outcomes[i] = target(*args)
        except Exception as e:
            outcomes[i] = e
        finally:
            # A thread's database connections are its own: closed, they let the test database
            # (PostgreSQL) be dropped at the end of the run.
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(args_list)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def assert_restorable(store, cid, original):
    assert store.load(cid) is None
    assert ArchivedSession.objects.filter(conversation_id=cid).exists(), "the session is lost"
    restore_session(cid, keep_turns=3)
    assert store.load(cid, window=None) == original


def test_two_compactions_of_one_idle_session_leave_it_restorable(store):
    for n in range(10):
        cid = f"r{n}"
        save_session(store, cid, turns=4)
        original = store.load(cid, window=None)
        make_idle(store, cid)

        outcomes = race(compact_session, [(cid, IDLE), (cid, IDLE)])

        archived = [o for o in outcomes if getattr(o, "action", None) is services.Action.ARCHIVED]
        assert len(archived) == 1, outcomes
        others = [o for o in outcomes if o not in archived]
        assert all(isinstance(o, SessionNotFound | SessionBusy) for o in others), others
        assert_restorable(store, cid, original)


def test_unguarded_archive_runs_never_delete_the_row_of_the_run_that_dropped_it(store):
    # As if the session guard had expired under a slow run: only the row rule protects it.
    for n in range(20):
        cid = f"u{n}"
        save_session(store, cid, turns=3)
        original = store.load(cid, window=None)

        race(services.archive_idle, [(store, cid), (store, cid)])

        assert_restorable(store, cid, original)


@pytest.mark.parametrize("mode", ["guarded", "unguarded"])
def test_two_processes_archiving_one_idle_session_leave_it_restorable(store, mode):
    save_session(store, "p1", turns=6)
    original = store.load("p1", window=None)
    make_idle(store, "p1")
    go = "race:go"
    database = connection.settings_dict["NAME"]
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.sessions_app.race_child", "p1", database, go, mode],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(1.5)  # both children connected and waiting
    store.client.rpush(go, "go", "go")
    outputs = [child.communicate(timeout=60) for child in children]

    outcomes = sorted(json.loads(out.strip().splitlines()[-1])["outcome"] for out, _ in outputs)
    assert "archived" in outcomes, outputs
    assert_restorable(store, "p1", original)


def test_a_trim_racing_a_compaction_of_one_session_loses_no_turn(store):
    save_session(store, "c1", turns=60)
    policy = CompactionPolicy(max_bytes=10**9, max_turns=10, keep_turns=5, batch_size=7)
    appended = []

    def append():
        for n in range(60, 90):
            appended.extend(store.append_turns("c1", [make_turn(n)]))

    outcomes = race(
        lambda job: job(),
        [
            (lambda: trim_history("c1", keep=3, batch_size=5),),
            (lambda: compact_session("c1", policy),),
            (append,),
        ],
    )

    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert all(isinstance(e, SessionBusy) for e in errors), errors
    assert len(errors) < 2, "one of the two operations ran"
    in_redis = {t["seq"] for t in maintenance.snapshot(store, "c1").session["history"]}
    archived = set(ArchivedTurn.objects.filter(conversation_id="c1").values_list("seq", flat=True))
    assert not in_redis & archived
    assert sorted(in_redis | archived) == list(range(90))
    assert appended == list(range(60, 90))


def test_a_second_operation_on_a_busy_session_waits_then_gives_up(store, settings):
    settings.ROBOTPERF_COMPACTION = {**settings.ROBOTPERF_COMPACTION, "SESSION_LOCK_WAIT": 1}
    save_session(store, "c1", turns=30)

    with session_guard("c1"):
        started = time.monotonic()
        with pytest.raises(SessionBusy, match="another operation on it is running"):
            trim_history("c1", keep=5)
        assert time.monotonic() - started >= 0.9
        with pytest.raises(SessionBusy, match="another operation"):
            compact_session("c1", IDLE)

    assert trim_history("c1", keep=5).turns_archived == 25


def test_a_compaction_while_another_holds_the_job_lock_is_refused(store):
    save_session(store, "c1", turns=30)

    with exclusive(COMPACTION_LOCK, timeout=60):
        with pytest.raises(LockHeld, match="compact-oversized-sessions"):
            compact_oversized(CompactionPolicy.from_settings(max_turns=10, keep_turns=5))
        with pytest.raises(CommandError, match="another run holds the lock"):
            call_command("compact_sessions", *SMALL)

    assert store.client.llen(store.keys.turns("c1")) == 30


def test_manage_py_compact_exits_non_zero_while_the_task_runs(store, tmp_path):
    save_session(store, "c1", turns=30)
    with exclusive(COMPACTION_LOCK, timeout=60):
        done = subprocess.run(
            [sys.executable, "manage.py", "compact_sessions", *SMALL],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
            check=False,
        )
    assert done.returncode == 1
    assert "another run holds the lock 'compact-oversized-sessions'" in done.stderr
    assert store.client.llen(store.keys.turns("c1")) == 30


def test_a_batch_compacts_the_free_sessions_and_waits_for_a_busy_one(store, settings):
    settings.ROBOTPERF_COMPACTION = {**settings.ROBOTPERF_COMPACTION, "SESSION_LOCK_WAIT": 1}
    for cid in ("a", "busy", "b"):
        save_session(store, cid, turns=30)
    policy = CompactionPolicy(max_bytes=10**9, max_turns=10, keep_turns=5)
    lock_keys = f"{settings.ROBOTPERF_LOCKS['KEY_PREFIX']}conv:*"

    with session_guard("busy"):
        report = compact_oversized(policy)
        assert store.client.keys(lock_keys) == [b"rp:lock:conv:busy"], "only the holder's left"

    assert report.compacted == 2
    assert [s["conversation_id"] for s in report.skipped] == ["busy"]
    assert "another operation on it is running" in report.skipped[0]["reason"]
    assert store.client.llen(store.keys.turns("busy")) == 30
    assert store.client.keys(lock_keys) == []


def test_appends_and_trims_racing_batched_compactions_lose_no_turn(store, settings):
    settings.ROBOTPERF_COMPACTION = {**settings.ROBOTPERF_COMPACTION, "SESSION_LOCK_WAIT": 5}
    cids = [f"c{n}" for n in range(8)]
    for cid in cids:
        save_session(store, cid, turns=40)
    policy = CompactionPolicy(max_bytes=10**9, max_turns=10, keep_turns=5, batch_size=6)
    appended = {cid: [] for cid in cids}
    stop = threading.Event()

    def append():
        for n in range(40, 200):
            if stop.is_set():
                return
            for cid in cids:
                appended[cid] += store.append_turns(cid, [make_turn(n)])

    def compact():
        return [compact_oversized(policy) for _ in range(4)]

    def trim():
        # One session at a time, under its own lock: the batch holds some of those locks.
        return [trim_history(cid, keep=3, batch_size=4) for _ in range(2) for cid in cids]

    writer = threading.Thread(target=append)
    writer.start()
    try:
        outcomes = race(lambda job: job(), [(compact,), (trim,)])
    finally:
        stop.set()
        writer.join()

    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    for cid in cids:
        in_redis = {t["seq"] for t in maintenance.snapshot(store, cid).session["history"]}
        archived = set(
            ArchivedTurn.objects.filter(conversation_id=cid).values_list("seq", flat=True)
        )
        assert not in_redis & archived, cid
        assert sorted(in_redis | archived) == list(range(40 + len(appended[cid]))), cid
