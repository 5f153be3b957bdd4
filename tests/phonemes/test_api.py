"""The similarity JSON endpoint, end to end through Django and the real phoneme server."""

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import Client

from phonemes.client import get_client
from tests.phonemes.conftest import dead_url

URL = "/api/phonemes/similarity"
pytestmark = pytest.mark.django_db


def test_scores_two_texts(client, phoneme_settings):
    response = client.post(
        URL, {"text_1": "cat", "text_2": "bat", "lang": "en"}, content_type="application/json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["score"] == pytest.approx(2 / 3)
    assert (body["phonemes_1"], body["phonemes_2"]) == (["k", "a", "t"], ["b", "a", "t"])
    assert body["cached"] is False
    assert response["Server-Timing"].startswith("app;dur=")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{nope", "JSON"),
        (b"\xff\xfe{}", "JSON"),
        ("[]", "JSON object"),
        ('{"text_1": "cat"}', "must be strings"),
        ('{"text_1": "cat", "text_2": "   "}', "empty"),
        ('{"text_1": "cat", "text_2": "bat", "lang": "x y"}', "language code"),
        ('{"text_1": "cat", "text_2": "bat", "lang": "xx"}', "unknown language"),
    ],
)
def test_bad_input_is_a_400(client, phoneme_settings, body, message):
    response = client.post(URL, body, content_type="application/json")
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_service_down_is_a_503_to_retry_naming_the_service(client, settings):
    settings.PHONEME_URL = dead_url()
    settings.ROBOTPERF_PHONEMES = {**settings.ROBOTPERF_PHONEMES, "BACKOFF": 0.01}
    response = client.post(URL, {"text_1": "cat", "text_2": "bat"}, content_type="application/json")
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert settings.PHONEME_URL in response.json()["error"]
    get_client().close()


def test_only_post(client):
    assert client.get(URL).status_code == 405


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_another_method_is_a_405_json_naming_post(client, method):
    response = getattr(client, method)(URL)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response["Content-Type"] == "application/json"
    assert "POST" in response.json()["error"]


def test_a_body_over_the_upload_limit_is_a_413_json(client, settings):
    body = b'{"text_1": "' + b"a" * (10 * 1024 * 1024) + b'", "text_2": "b"}'
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = client.post(URL, body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert response.json() == {"error": f"request body is larger than the {limit} bytes accepted"}
    assert response["Server-Timing"].startswith("app;dur=")


def test_an_unexpected_failure_is_a_500_json(client, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr("phonemes.api.phoneme_similarity", broken)
    response = client.post(URL, {"text_1": "cat", "text_2": "bat"}, content_type="application/json")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    assert "boom" in caplog.text


def post_concurrently(bodies):
    """The responses to ``bodies`` posted at once, each from a thread of its own."""
    start = threading.Barrier(len(bodies))

    def post(body):
        start.wait()
        return Client().post(URL, body, content_type="application/json")

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


@pytest.mark.django_db(transaction=True)
class TestABusyPool:
    def test_lookups_queue_for_a_connection_within_the_queue_time(self, phoneme_settings, service):
        phoneme_settings.ROBOTPERF_PHONEMES = {
            **phoneme_settings.ROBOTPERF_PHONEMES,
            "POOL_SIZE": 2,
            "QUEUE_TIMEOUT": 10.0,
        }
        service.latency = 0.05
        # 60 distinct texts through 2 connections: about 1.5 s of queueing, well past the
        # connect timeout (0.5 s) that used to bound the wait.
        bodies = [{"text_1": f"cat {i}", "text_2": f"bat {i}"} for i in range(30)]

        responses = post_concurrently(bodies)

        assert [r.status_code for r in responses] == [200] * 30
        assert service.phoneme_requests == 60
        assert service.connections <= 2

    def test_past_the_queue_time_the_answer_is_503_with_retry_after(
        self, phoneme_settings, service
    ):
        phoneme_settings.ROBOTPERF_PHONEMES = {
            **phoneme_settings.ROBOTPERF_PHONEMES,
            "POOL_SIZE": 1,
            "QUEUE_TIMEOUT": 0.3,
        }
        service.latency = 0.2
        alone = Client().post(URL, {"text_1": "cat", "text_2": "bat"}, "application/json")
        assert alone.status_code == 200
        bodies = [{"text_1": f"cat {i}", "text_2": f"bat {i}"} for i in range(12)]

        started = time.monotonic()
        responses = post_concurrently(bodies)

        statuses = Counter(r.status_code for r in responses)
        assert set(statuses) <= {200, 503}, statuses  # never a 502
        assert statuses[503] >= 6, statuses  # 24 lookups of 0.2 s each, one connection
        busy = [r for r in responses if r.status_code == 503]
        assert {r["Retry-After"] for r in busy} == {"1"}  # the read timeout, 0.5 s, rounded up
        assert all("stayed busy" in r.json()["error"] for r in busy)
        # Nobody waited much past the queue time (plus the one request being served).
        assert time.monotonic() - started < 3
