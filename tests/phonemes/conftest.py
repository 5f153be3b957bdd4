"""Fixtures of the phoneme tests: a real reference server on a loopback port, and settings
that point the process-wide client and cache at it with short timeouts."""

import socket

import pytest

from phonemes.cache import get_cache
from phonemes.client import get_client
from phonemes.server import PhonemeService, ServerThread

FAST_CLIENT = {
    "CONNECT_TIMEOUT": 0.5,
    "READ_TIMEOUT": 0.5,
    "RETRIES": 2,
    "BACKOFF": 0.01,
    "POOL_SIZE": 4,
    "TOUCH_INTERVAL": 3600.0,
}


@pytest.fixture
def service():
    """The reference service's state: tests read its counters and set its knobs."""
    return PhonemeService()


@pytest.fixture
def phoneme_server(service):
    with ServerThread(service) as server:
        yield server


@pytest.fixture
def phoneme_settings(settings, phoneme_server):
    """The process-wide client and cache, pointed at the test server; closed afterwards."""
    settings.PHONEME_URL = phoneme_server.url
    settings.ROBOTPERF_PHONEMES = {**settings.ROBOTPERF_PHONEMES, **FAST_CLIENT}
    yield settings
    get_client().close()


@pytest.fixture
def phoneme_client(phoneme_settings):
    return get_client()


@pytest.fixture
def cache(phoneme_settings):
    return get_cache()


def dead_url():
    """A loopback URL nothing listens on: the port was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
