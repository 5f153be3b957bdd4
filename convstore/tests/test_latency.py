"""Every call's latency counted per minute in each process, added up in Redis by all of them,
read back as each minute's p50 and p99 within a bucket's width of the true figures."""

import math
import statistics
import time

import pytest
import redis

from convstore import ConversationStore, add_observer, read_latency, remove_observer
from convstore.keys import KeyLayout
from convstore.latency import KEEP, LOAD, bucket, bucket_seconds, minute_of, percentile
from convstore.slowlog import SlowCallLog
from tests.conftest import URL

# A percentile read back is the middle of its bucket: within half a bucket (2 ** (1/8)) of any
# duration in it, so within a bucket's width of the true percentile, which may sit at an edge.
WIDTH = 2 ** (1 / 4)


pytestmark = pytest.mark.single_redis  # clients of one Redis, made from its URL


def close(estimate, true):
    return abs(math.log2(estimate / true)) <= math.log2(WIDTH)


@pytest.mark.parametrize("seconds", [2e-5, 3.3e-4, 0.0007, 0.012, 0.05, 1.7, 20.0])
def test_a_duration_reads_back_within_half_a_bucket(seconds):
    assert abs(math.log2(bucket_seconds(bucket(seconds)) / seconds)) <= 1 / 8 + 1e-9


def test_percentiles_of_counted_buckets():
    durations = [0.0005 * 1.01**i for i in range(1000)]
    counts = {}
    for d in durations:
        counts[bucket(d)] = counts.get(bucket(d), 0) + 1

    assert close(percentile(counts, 0.5), statistics.median(durations))
    assert close(percentile(counts, 0.99), sorted(durations)[989])
    assert percentile({}, 0.5) is None


def test_loads_of_every_process_add_up_per_minute(redis_client):
    """Two logs, as two processes would have, each flushing its own counts."""
    store = ConversationStore.from_url(URL)
    store.save({"conversation_id": "c1", "history": [{"n": i} for i in range(50)]})
    seen = []
    add_observer(seen.append)
    logs = [SlowCallLog(redis.Redis.from_url(URL), threshold=60) for _ in range(2)]
    try:
        for slow_log in logs:
            add_observer(slow_log)
            for _ in range(100):
                store.load("c1", window=20)
            remove_observer(slow_log)
            assert slow_log.flush()
    finally:
        remove_observer(seen.append)
        for slow_log in logs:
            slow_log.close()
    now = time.time()

    minutes = read_latency(redis_client, now=now, minutes=60)
    assert len(minutes) == 60
    assert minutes[-1].minute == minute_of(now)
    loads = sorted(r.seconds for r in seen if r.call == LOAD)
    # Calls near a minute's turn land in two minutes: add them up.
    counted = [m for m in minutes if m.calls]
    assert sum(m.calls for m in counted) == len(loads) == 200
    if len(counted) == 1:
        (last,) = counted
        assert close(last.p50, statistics.median(loads))
        assert close(last.p99, loads[197])
    assert all(m.p50 is None and m.p99 is None for m in minutes if not m.calls)
    for m in counted:
        assert 0 < redis_client.ttl(KeyLayout().latency(m.minute)) <= KEEP


def test_nothing_counted_writes_nothing(redis_client):
    slow_log = SlowCallLog(redis.Redis.from_url(URL))
    assert slow_log.flush()
    slow_log.close()
    assert redis_client.dbsize() == 0


def test_fields_and_keys_not_ours_count_as_no_call(redis_client):
    now = time.time()
    keys = KeyLayout()
    minute = minute_of(now)
    redis_client.hset(keys.latency(minute), mapping={f"{LOAD}:x": 5, f"{LOAD}:999": 5, "n": 1})
    redis_client.hset(keys.latency(minute), f"{LOAD}:40", "many")
    redis_client.set(keys.latency(minute - 1), "a string")
    redis_client.hset(keys.latency(minute - 2), f"{LOAD}:40", 3)

    *_, two_ago, one_ago, last = read_latency(redis_client, now=now, minutes=5)
    assert (last.calls, last.p50) == (0, None)
    assert one_ago.calls == 0
    assert two_ago.calls == 3
    assert two_ago.p50 == two_ago.p99 == bucket_seconds(40)
