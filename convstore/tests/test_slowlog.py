"""The slow-call log: calls over the threshold in a capped stream, with their phases, size and
process; nothing written below it; a log whose Redis is down or stalled never fails or slows a
call; read back newest first, filtered by call and conversation."""

import multiprocessing
import os
import socket
import time

import pytest
import redis

from convstore import (
    ConversationStore,
    StoreError,
    disable_slow_log,
    enable_slow_log,
    read_slow_calls,
)
from convstore.keys import KeyLayout
from convstore.observe import add_observer
from convstore.slowlog import SlowCallLog
from tests.conftest import URL

KEY = KeyLayout().slow_log
LOAD = "robot-v2.load-conversation"


pytestmark = pytest.mark.single_redis  # clients of one Redis, made from its URL


@pytest.fixture(autouse=True)
def _disabled_afterwards():
    yield
    disable_slow_log()


def big_session(cid, mb=3):
    steps = [{"step": i, "question": "x" * 1000, "answer": f"a{i}"} for i in range(mb * 1000)]
    return {"conversation_id": cid, "record": {"HISTORY_QUESTION": steps}, "history": []}


def test_every_call_at_threshold_zero_is_logged_with_what_it_did(store, redis_client):
    slow_log = enable_slow_log(URL, threshold=0, name="robot-test")
    store.save({"conversation_id": "c1", "history": [{"role": "user"}], "record": {"n": 1}})
    store.load("c1", window=5)
    size = int(redis_client.hget(KeyLayout().state("c1"), "bytes"))
    store.append_turns("c1", [{"role": "bot"}])
    assert slow_log.flush()

    calls = read_slow_calls(redis_client, 10)
    assert [c.call for c in calls] == [
        "robot-v2.append-turns",
        LOAD,
        "robot-v2.save-conversation",
    ]
    load = calls[1]
    assert load.conversation_id == "c1"
    assert load.window == 5
    assert load.size == size > 0
    assert [name for name, _ in load.phases] == ["redis", "decode", "assemble"]
    assert 0 < sum(seconds for _, seconds in load.phases) <= load.seconds + 1e-9  # rounding
    assert load.process == f"{socket.gethostname()}:{os.getpid()}"
    assert load.name == "robot-test"
    assert load.error == ""
    assert time.time() - 60 < load.at <= time.time()
    assert calls[0].window is None
    assert calls[0].size is None


def test_only_calls_over_the_threshold_are_logged(store, redis_client, records):
    """A 3 MB state takes many times longer to load than an empty one: with a threshold between
    the two (measured first, so that the machine's speed does not matter), the log holds exactly
    the calls whose own duration reached it."""
    store.save(big_session("big"))
    store.save({"conversation_id": "small", "history": []})
    for _ in range(3):
        store.load("small", window=20)
        store.load("big", window=20)
    loads = [r for r in records if r.call == "robot-v2.load-conversation"]
    small = max(r.seconds for r in loads if r.conversation_id == "small")
    big = min(r.seconds for r in loads if r.conversation_id == "big")
    threshold = (small * big) ** 0.5
    records.clear()
    slow_log = enable_slow_log(URL, threshold=threshold)
    for _ in range(3):
        store.load("small", window=20)
        store.load("big", window=20)
    assert slow_log.flush()

    slow = [(r.call, r.conversation_id, r.seconds) for r in records if r.seconds >= threshold]
    logged = [(c.call, c.conversation_id, c.seconds) for c in read_slow_calls(redis_client)]
    assert [(call, cid) for call, cid, _ in logged] == [(call, cid) for call, cid, _ in slow][::-1]
    assert ("robot-v2.load-conversation", "big") in [(call, cid) for call, cid, _ in logged]
    assert all(seconds >= threshold for _, _, seconds in logged)
    assert len(logged) < len(records)


def test_a_threshold_not_crossed_writes_nothing(store, redis_client):
    slow_log = enable_slow_log(URL, threshold=60)
    store.save({"conversation_id": "c1", "history": []})
    store.load("c1")
    assert slow_log.flush()

    assert not redis_client.exists(KEY)
    assert slow_log.written == slow_log.dropped == 0


def test_a_failed_call_is_logged_with_its_error(store, redis_client):
    slow_log = enable_slow_log(URL, threshold=0)
    with pytest.raises(StoreError):
        store.append_turns("nobody", [{"role": "user"}])
    assert slow_log.flush()

    (entry,) = read_slow_calls(redis_client)
    assert (entry.call, entry.conversation_id, entry.error) == (
        "robot-v2.append-turns",
        "nobody",
        "SessionNotFound",
    )


def test_the_stream_is_capped(redis_client):
    slow_log = SlowCallLog(redis.Redis.from_url(URL), threshold=0, maxlen=100)
    add_observer(slow_log)
    store = ConversationStore.from_url(URL)
    store.save({"conversation_id": "c1", "history": []})
    for _ in range(1000):
        store.load("c1", window=0)
    assert slow_log.flush()
    slow_log.close()

    # XADD MAXLEN ~ trims whole nodes of the stream: never far past the cap.
    assert 100 <= redis_client.xlen(KEY) <= 300
    assert slow_log.written + slow_log.dropped == 1001


def refusing_url():
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


def test_redis_down_for_the_log_never_fails_a_call(store):
    slow_log = enable_slow_log(refusing_url(), threshold=0)
    assert store.save({"conversation_id": "c1", "history": []}) == 1
    for _ in range(20):
        assert store.load("c1")["conversation_id"] == "c1"
    assert slow_log.flush()

    assert slow_log.written == 0
    assert slow_log.dropped == 21


def test_a_stalled_redis_for_the_log_never_slows_a_call(store):
    """A server that accepts connections and never answers: the writer waits on it, the calls
    do not; what does not fit the queue is dropped and counted."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        slow_log = enable_slow_log(url, threshold=0)
        store.save({"conversation_id": "c1", "history": []})
        started = time.perf_counter()
        for _ in range(2000):
            store.load("c1", window=0)
        elapsed = time.perf_counter() - started

        assert elapsed < 5, "2,000 loads took as long as the log's writes"
        assert slow_log.dropped >= 2000 - 1000 - 100  # the queue and one batch in hand


def test_newest_first_filtered_by_call_and_conversation(store, redis_client):
    slow_log = enable_slow_log(URL, threshold=0)
    for cid in ("a", "b"):
        store.save({"conversation_id": cid, "history": []})
    for i in range(5):
        store.load("a" if i % 2 else "b", window=i)
    assert slow_log.flush()

    loads_of_b = read_slow_calls(redis_client, 10, call=LOAD, conversation_id="b")
    assert [c.window for c in loads_of_b] == [4, 2, 0]
    assert [c.call for c in read_slow_calls(redis_client, 2)] == [LOAD, LOAD]
    saves = read_slow_calls(redis_client, call="robot-v2.save-conversation")
    assert [c.conversation_id for c in saves] == ["b", "a"]
    assert read_slow_calls(redis_client, conversation_id="nobody") == []


def test_entries_written_by_someone_else_are_read_as_they_are(redis_client):
    redis_client.xadd(KEY, {"note": "by hand"})
    redis_client.xadd(KEY, {"call": LOAD, "ms": "many", "phases": "[[1]", "bytes": "-1"})

    odd, by_hand = read_slow_calls(redis_client)
    assert (odd.call, odd.seconds, odd.phases, odd.size) == (LOAD, None, (), None)
    assert (by_hand.call, by_hand.conversation_id, by_hand.at) == ("", "", None)


@pytest.mark.parametrize("number", ["nan", "inf", "-inf", "-5", "1e400"])
def test_a_time_or_duration_no_call_could_have_is_read_as_none(redis_client, number):
    phases = '[["redis", -1], ["decode", 2]]'
    redis_client.xadd(KEY, {"call": LOAD, "ms": number, "at": number, "phases": phases})

    (odd,) = read_slow_calls(redis_client)
    assert (odd.seconds, odd.at) == (None, None)
    assert odd.phases == (("decode", 0.002),)


def test_a_key_of_another_type_is_a_clear_error(redis_client):
    redis_client.set(KEY, "not a stream")
    with pytest.raises(StoreError, match="rp:slowlog cannot be read as the slow-call log"):
        read_slow_calls(redis_client)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold": -1}, "threshold must be seconds >= 0"),
        ({"threshold": float("nan")}, "threshold must be seconds >= 0"),
        ({"maxlen": 0}, "maxlen must be an integer >= 1"),
        ({"maxlen": 1.5}, "maxlen must be an integer >= 1"),
        ({"flush_interval": 0}, "flush_interval must be seconds > 0"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        SlowCallLog(redis.Redis.from_url(URL), **options)


def test_enabling_again_replaces_the_log(store, redis_client):
    first = enable_slow_log(URL, threshold=0, name="first")
    second = enable_slow_log(URL, threshold=0, name="second")
    store.save({"conversation_id": "c1", "history": []})
    assert second.flush()

    assert [c.name for c in read_slow_calls(redis_client)] == ["second"]
    assert not first.flush()  # closed


def _call_in_child():
    ConversationStore.from_url(URL).load("c1")
    disable_slow_log()  # writes what it holds
    os._exit(0)


# As Celery's prefork pool and gunicorn do, after the log's writer thread started.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_logs_through_a_writer_of_its_own(redis_client):
    slow_log = enable_slow_log(URL, threshold=0, name="parent")
    ConversationStore.from_url(URL).save({"conversation_id": "c1", "history": []})
    assert slow_log.flush()
    child = multiprocessing.get_context("fork").Process(target=_call_in_child)
    child.start()
    child.join(30)

    assert child.exitcode == 0
    newest = read_slow_calls(redis_client, 1)[0]
    assert newest.call == LOAD
    assert newest.process == f"{socket.gethostname()}:{child.pid}"
