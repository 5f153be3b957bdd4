"""Shared fixtures: the tests' own Redis database, flushed around every test."""

import pytest
from django.core.cache import caches

from sessions_app.store import get_store


@pytest.fixture(autouse=True)
def redis_client():
    """The raw client of the tests' Redis database, empty at the start and end of each test."""
    client = caches["sessions"].client.get_client(write=True)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def store():
    return get_store()
