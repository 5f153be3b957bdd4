"""/healthz and /readyz: a real phoneme server, the tests' Redis and broker, the test database;
a private Redis killed or paused, or a phoneme URL nobody answers, makes /readyz 503 naming it."""

import pytest

from phonemes.server import PhonemeService, ServerThread
from tests.phonemes.conftest import dead_url

CHECKS = {"redis", "database", "broker", "phonemes"}


@pytest.fixture
def all_up(settings, db):
    settings.ROBOTPERF_HEALTH = {"TIMEOUT": 1.0}
    with ServerThread(PhonemeService()) as server:
        settings.PHONEME_URL = server.url
        yield settings


def readyz(client):
    response = client.get("/readyz")
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    return response.status_code, response.json()


def failed(body):
    return {name for name, result in body["checks"].items() if not result["ok"]}


def test_healthz_answers_without_asking_anything(client, settings):
    settings.PHONEME_URL = dead_url()
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_200_when_everything_answers(client, all_up):
    status, body = readyz(client)
    assert (status, body["status"]) == (200, "ok")
    assert set(body["checks"]) == CHECKS
    for result in body["checks"].values():
        assert result["ok"] is True
        assert isinstance(result["latency_ms"], float)
        assert "error" not in result


def test_readyz_is_503_naming_redis_when_it_is_down(client, all_up, sessions_redis):
    server = sessions_redis()
    assert readyz(client)[0] == 200
    server.kill()
    status, body = readyz(client)
    assert (status, body["status"], failed(body)) == (503, "unavailable", {"redis"})
    assert body["checks"]["redis"]["error"] == "ConnectionError"


def test_readyz_does_not_wait_for_a_redis_that_hangs(client, all_up, sessions_redis):
    all_up.ROBOTPERF_HEALTH = {"TIMEOUT": 0.3}
    server = sessions_redis()
    server.pause()
    status, body = readyz(client)
    assert (status, failed(body)) == (503, {"redis"})
    assert body["checks"]["redis"]["error"] in {"TimeoutError", "timeout"}


def test_readyz_is_503_naming_the_phoneme_server_when_it_is_down(client, all_up):
    all_up.PHONEME_URL = dead_url()
    status, body = readyz(client)
    assert (status, failed(body)) == (503, {"phonemes"})
    assert body["checks"]["phonemes"]["error"] == "URLError"
    assert "127.0.0.1" not in str(body), "an unauthenticated probe names no host"


def test_readyz_is_503_naming_the_broker_when_it_is_down(client, all_up):
    all_up.CELERY_BROKER_URL = dead_url().replace("http://", "redis://") + "/0"
    status, body = readyz(client)
    assert (status, failed(body)) == (503, {"broker"})
