"""PhonemeClient against the real reference server: pooling, fork, timeouts, retries, errors."""

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.exceptions import ImproperlyConfigured

from phonemes.client import (
    ClientConfig,
    PhonemeClient,
    PhonemeServiceBusy,
    PhonemeServiceError,
    get_client,
)
from tests.phonemes.conftest import dead_url


def make_client(url, **overrides):
    options = {"connect_timeout": 0.5, "read_timeout": 0.5, "retries": 2, "backoff": 0.01}
    return PhonemeClient(ClientConfig(url=url, **{**options, **overrides}))


class TestSync:
    def test_returns_the_phonemes_of_a_text(self, phoneme_client):
        assert phoneme_client.phonemes("cat", "en") == ["k", "a", "t"]

    def test_many_calls_share_one_connection(self, phoneme_client, service):
        for word in ["cat", "bat", "mat"] * 10:
            phoneme_client.phonemes(word, "en")
        assert service.phoneme_requests == 30
        assert service.connections == 1

    def test_the_process_has_one_client(self, phoneme_settings):
        assert get_client() is get_client()

    def test_close_then_use_opens_a_new_connection(self, phoneme_client, service):
        phoneme_client.phonemes("cat", "en")
        phoneme_client.close()
        assert phoneme_client.phonemes("bat", "en") == ["b", "a", "t"]
        assert service.connections == 2

    @pytest.mark.timeout(5)
    def test_service_down_raises_with_the_url(self):
        url = dead_url()
        with pytest.raises(PhonemeServiceError, match=r"127\.0\.0\.1") as raised:
            make_client(url).phonemes("cat", "en")
        assert raised.value.url == f"{url}/phonemes"
        assert raised.value.cause is not None
        assert raised.value.status is None

    @pytest.mark.timeout(5)
    def test_slow_service_raises_after_the_read_timeout_without_retrying(
        self, phoneme_server, service
    ):
        service.latency = 2.0
        with pytest.raises(PhonemeServiceError, match="Read timed out"):
            make_client(phoneme_server.url, read_timeout=0.2).phonemes("cat", "en")
        assert service.phoneme_requests == 1

    def test_5xx_is_retried_then_raised(self, phoneme_server, service):
        service.fail_remaining = 10
        with pytest.raises(PhonemeServiceError, match="HTTP 503") as raised:
            make_client(phoneme_server.url, retries=2).phonemes("cat", "en")
        assert raised.value.status == 503
        assert service.phoneme_requests == 3

    def test_5xx_then_success_returns_the_answer(self, phoneme_server, service):
        service.fail_remaining = 1
        assert make_client(phoneme_server.url).phonemes("cat", "en") == ["k", "a", "t"]
        assert service.phoneme_requests == 2

    def test_4xx_is_not_retried(self, phoneme_client, service):
        with pytest.raises(PhonemeServiceError, match="unknown language") as raised:
            phoneme_client.phonemes("cat", "xx")
        assert raised.value.status == 400
        assert service.phoneme_requests == 1


class TestAsync:
    def test_many_calls_share_one_session_and_connection(self, phoneme_client, service):
        async def main():
            first = await phoneme_client.aphonemes("cat", "en")
            session = phoneme_client._session()
            for word in ["bat", "mat"] * 10:
                await phoneme_client.aphonemes(word, "en")
            same = phoneme_client._session() is session
            await phoneme_client.aclose()
            return first, same

        first, same_session = asyncio.run(main())
        assert first == ["k", "a", "t"]
        assert same_session
        assert service.phoneme_requests == 21
        assert service.connections == 1

    def test_concurrent_calls_stay_within_the_pool_limit(self, phoneme_client, service):
        async def main():
            await asyncio.gather(*(phoneme_client.aphonemes(f"word {i}", "en") for i in range(20)))
            await phoneme_client.aclose()

        asyncio.run(main())
        assert service.phoneme_requests == 20
        assert 1 <= service.connections <= phoneme_client.config.pool_size

    def test_each_event_loop_gets_its_own_session(self, phoneme_client):
        async def session_of_this_loop():
            await phoneme_client.aphonemes("cat", "en")
            return phoneme_client._session()

        first = asyncio.run(session_of_this_loop())
        second = asyncio.run(session_of_this_loop())
        assert first is not second
        assert first.closed  # its loop ended: detached when the second loop opened one
        phoneme_client.close()
        assert second.closed

    @pytest.mark.timeout(5)
    def test_service_down_raises(self):
        phoneme_client = make_client(dead_url())
        with pytest.raises(PhonemeServiceError, match="Cannot connect"):
            asyncio.run(phoneme_client.aphonemes("cat", "en"))
        phoneme_client.close()

    def test_5xx_is_retried_then_raised(self, phoneme_server, service):
        service.fail_remaining = 10
        phoneme_client = make_client(phoneme_server.url, retries=1)

        async def main():
            try:
                return await phoneme_client.aphonemes("cat", "en")
            finally:
                await phoneme_client.aclose()

        with pytest.raises(PhonemeServiceError, match="HTTP 503"):
            asyncio.run(main())
        assert service.phoneme_requests == 2

    @pytest.mark.timeout(5)
    def test_slow_service_raises_after_the_read_timeout(self, phoneme_server, service):
        service.latency = 2.0
        phoneme_client = make_client(phoneme_server.url, read_timeout=0.2)

        async def main():
            try:
                return await phoneme_client.aphonemes("cat", "en")
            finally:
                await phoneme_client.aclose()

        with pytest.raises(PhonemeServiceError, match="read timeout"):
            asyncio.run(main())
        assert service.phoneme_requests == 1


class TestABusyPool:
    """More lookups than connections: they queue up to the queue time, then PhonemeServiceBusy."""

    def gather(self, client, texts):
        async def main():
            try:
                lookups = (client.aphonemes(text, "en") for text in texts)
                return await asyncio.gather(*lookups, return_exceptions=True)
            finally:
                await client.aclose()

        return asyncio.run(main())

    def test_async_lookups_queue_past_the_connect_timeout(self, phoneme_server, service):
        service.latency = 0.05
        client = make_client(phoneme_server.url, pool_size=2, queue_timeout=10.0)
        # 40 lookups through 2 connections: about 1 s of queueing, twice the connect timeout.
        results = self.gather(client, [f"word {i}" for i in range(40)])
        assert [type(r) for r in results] == [list] * 40
        assert service.connections <= 2

    def test_async_lookups_past_the_queue_time_are_busy(self, phoneme_server, service):
        service.latency = 0.3
        client = make_client(phoneme_server.url, pool_size=1, queue_timeout=0.2)
        results = self.gather(client, [f"word {i}" for i in range(4)])
        busy = [r for r in results if isinstance(r, PhonemeServiceBusy)]
        assert len(busy) == 3
        assert {(b.status, b.retry_after) for b in busy} == {(503, 1)}
        assert service.phoneme_requests == 1

    def test_sync_lookups_share_the_deadline_they_are_given(self, phoneme_server, service):
        service.latency = 0.3
        client = make_client(phoneme_server.url, pool_size=1, queue_timeout=10.0)
        with ThreadPoolExecutor(1) as other:
            first = other.submit(client.phonemes, "cat", "en")
            time.sleep(0.1)  # the only connection is now busy for 0.2 s more
            with pytest.raises(PhonemeServiceBusy, match="stayed busy"):
                client.phonemes("bat", "en", deadline=time.monotonic() + 0.05)
            assert first.result() == ["k", "a", "t"]
        assert client.phonemes("bat", "en") == ["b", "a", "t"]
        client.close()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_opens_its_own_connection(phoneme_client, service):
    assert phoneme_client.phonemes("cat", "en") == ["k", "a", "t"]
    parent_pool = phoneme_client._pool
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        try:
            inherited = phoneme_client._pool is not None
            answer = phoneme_client.phonemes("bat", "en")
            os.write(write_end, f"{inherited}|{' '.join(answer)}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = pipe.read()
    os.waitpid(pid, 0)
    assert report == "False|b a t"
    # The parent's pool and connection are untouched by the child's.
    assert phoneme_client._pool is parent_pool
    assert phoneme_client.phonemes("mat", "en") == ["m", "a", "t"]
    assert service.connections == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": "ftp://example.org"}, r"http\(s\) URL, got 'ftp://example.org'"),
        ({"url": "not a url"}, r"http\(s\) URL, got 'not a url'"),
        ({"connect_timeout": 0}, "connect_timeout must be > 0 and finite"),
        ({"retries": -1}, "retries"),
        ({"queue_timeout": 0}, "queue_timeout must be > 0 and finite"),
        ({"read_timeout": float("nan")}, "read_timeout must be > 0 and finite"),
        ({"keepalive": float("inf")}, "keepalive must be > 0 and finite"),
    ],
)
def test_bad_configuration_is_refused(overrides, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        ClientConfig(**{"url": "http://127.0.0.1:8001", **overrides})
