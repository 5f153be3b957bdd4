"""No turn is lost: appenders race compaction and trims for seconds, then every turn counts.

Every seq `append_turns` returned must be in Redis or the archive exactly once, in order.
"""

import itertools
import random
import threading
import time
from collections import Counter

import pytest
from django.db import connection

from sessions_app.models import ArchivedTurn
from sessions_app.services import CompactionPolicy, compact_oversized, trim_history
from tests.sessions_app.factories import save_session

SESSIONS = [f"stress-{n}" for n in range(4)]
APPENDERS = 4
SECONDS = 3


def run_until(stop, errors, work):
    def loop():
        try:
            while not stop.is_set():
                work()
        except Exception as e:  # any failure in a thread fails the test
            errors.append(e)
            stop.set()
        finally:
            connection.close()

    return threading.Thread(target=loop)


@pytest.mark.django_db(transaction=True)
def test_no_turn_is_lost_while_compaction_and_trims_run(store):
    contents = {cid: {seq: f"turn {seq}" for seq in range(3)} for cid in SESSIONS}
    for cid in SESSIONS:
        save_session(store, cid, turns=3)
    lock = threading.Lock()
    stop, errors = threading.Event(), []
    policy = CompactionPolicy(max_bytes=10**9, max_turns=12, keep_turns=4, pinned=1, batch_size=5)

    def append():
        cid = random.choice(SESSIONS)
        texts = [
            f"{threading.get_ident()}-{time.monotonic_ns()}-{n}"
            for n in range(random.randint(1, 3))
        ]
        seqs = store.append_turns(cid, [{"role": "user", "content": text} for text in texts])
        with lock:
            contents[cid].update(zip(seqs, texts, strict=True))
        # A short breath keeps the backlog small enough for the operator to go round often.
        time.sleep(0.001)

    def operate():
        # One thread for the database side: the tests' in-memory SQLite refuses concurrent
        # writers outright (shared-cache table locks); two trims racing in Redis are tested
        # in test_services.
        cid = next(turn)
        if cid == SESSIONS[0]:
            compact_oversized(policy)
        else:
            trim_history(
                cid,
                keep=random.randint(0, 6),
                pinned=random.randint(0, 2),
                batch_size=3,
            )

    turn = itertools.cycle(SESSIONS)
    threads = [run_until(stop, errors, append) for _ in range(APPENDERS)]
    threads.append(run_until(stop, errors, operate))
    for thread in threads:
        thread.start()
    time.sleep(SECONDS)
    stop.set()
    for thread in threads:
        thread.join()

    assert errors == []
    for cid in SESSIONS:
        in_redis = [
            int(item.split(b"|", 1)[0])
            for item in store.client.lrange(store.keys.turns(cid), 0, -1)
        ]
        in_archive = ArchivedTurn.objects.filter(conversation_id=cid).values_list("seq", flat=True)
        places = Counter([*in_redis, *in_archive])
        assert set(places) == set(contents[cid]), cid
        assert set(places.values()) == {1}, cid
        assert in_archive, f"{cid} was never trimmed: the test did not interleave"
        history = store.load(cid, window=None)["history"]
        assert [turn["seq"] for turn in history] == sorted(contents[cid])
        assert [turn["content"] for turn in history] == [
            contents[cid][s] for s in sorted(contents[cid])
        ]
