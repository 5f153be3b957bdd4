"""The job and session locks: a token, an expiry, and a release that never frees another's."""

import threading
import time

import pytest
from django.conf import settings

from locks import LockHeld, LockLost, LockUnavailable, exclusive


def lock_key(name):
    return settings.ROBOTPERF_LOCKS["KEY_PREFIX"] + name


def test_a_held_lock_has_an_expiry_and_is_gone_after_release(redis_client):
    with exclusive("job", timeout=30):
        assert 25 < redis_client.ttl(lock_key("job")) <= 30
    assert not redis_client.exists(lock_key("job"))


def test_a_second_run_is_refused_while_the_first_holds_it():
    with (
        exclusive("job", timeout=30),
        pytest.raises(LockHeld, match="'job'"),
        exclusive("job", timeout=30),
    ):
        pass


def test_a_waiting_run_gets_the_lock_when_the_first_ends():
    released = threading.Event()

    def first():
        with exclusive("job", timeout=30):
            released.wait(5)
            time.sleep(0.2)

    holder = threading.Thread(target=first)
    holder.start()
    time.sleep(0.1)
    released.set()
    with exclusive("job", timeout=30, wait=3):
        pass
    holder.join()


def test_an_expired_lock_taken_over_is_not_released_by_its_first_owner(redis_client):
    first = exclusive("job", timeout=1)
    first.__enter__()
    time.sleep(1.2)  # the first owner's lock expires while its run goes on
    with exclusive("job", timeout=30):
        token = redis_client.get(lock_key("job"))
        first.__exit__(None, None, None)  # the first run ends and releases
        assert redis_client.get(lock_key("job")) == token
        assert redis_client.ttl(lock_key("job")) > 20


def test_reacquire_renews_the_expiry(redis_client):
    with exclusive("job", timeout=2) as lock:
        time.sleep(1.1)
        lock.reacquire()
        assert redis_client.pttl(lock_key("job")) > 1500


def test_an_unreachable_redis_is_a_connection_error_naming_it(settings):
    settings.CACHES = {
        **settings.CACHES,
        "sessions": {**settings.CACHES["sessions"], "LOCATION": "redis://:pw@127.0.0.1:1/3"},
    }
    unreachable = r"redis://127\.0\.0\.1:1/3 is unreachable"
    with pytest.raises(LockUnavailable, match=unreachable) as e, exclusive("job", timeout=30):
        pass
    assert "pw" not in str(e.value)


def test_a_renewal_after_another_run_took_the_lock_is_lock_lost(redis_client):
    with exclusive("job", timeout=30) as lock:
        redis_client.set(lock_key("job"), b"another run's token")

        with pytest.raises(LockLost, match="expired during this run and another run took it"):
            lock.reacquire()

    assert redis_client.get(lock_key("job")) == b"another run's token"


def test_a_lock_is_taken_and_renewed_when_redis_is_full(sessions_redis):
    client = sessions_redis("--maxmemory-policy", "noeviction").client()
    client.set("filler", b"x" * 100_000)
    client.config_set("maxmemory", client.info("memory")["used_memory"] // 2)

    with exclusive("job", timeout=30) as lock:
        lock.reacquire()
        assert 25 < client.ttl(lock_key("job")) <= 30
    assert not client.exists(lock_key("job"))
