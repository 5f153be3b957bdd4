"""The reference phoneme server over real HTTP on loopback: G2P, errors, counters, keep-alive."""

import orjson
import pytest
import urllib3

from phonemes.server import split_phonemes


@pytest.fixture
def http():
    pool = urllib3.PoolManager(maxsize=1, retries=False)
    yield pool
    pool.clear()


def post(http, server, body):
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    response = http.request("POST", f"{server.url}/phonemes", body=payload)
    return response.status, orjson.loads(response.data)


def test_splits_espeak_output_into_phonemes():
    stress = "\u02c8"
    assert split_phonemes(f"ð_ə k_{stress}a_t\ns_{stress}a_t\n") == [
        "ð",
        "ə",
        "k",
        "a",
        "t",
        "s",
        "a",
        "t",
    ]
    assert split_phonemes(f"(en)_h_ə1_l_{stress}əʊ_(vi)_") == ["h", "ə1", "l", "əʊ"]
    assert split_phonemes("  \n") == []


def test_answers_the_phonemes_of_a_text(http, phoneme_server):
    assert post(http, phoneme_server, {"text": "cat", "lang": "en"}) == (
        200,
        {"phonemes": ["k", "a", "t"]},
    )


def test_a_text_that_looks_like_an_option_is_read_as_text(http, phoneme_server):
    status, body = post(http, phoneme_server, {"text": "-x", "lang": "en"})
    assert status == 200
    assert body["phonemes"] == ["ɛ", "k", "s"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        ([1, 2], "JSON object"),
        ({"lang": "en"}, "text must be"),
        ({"text": "  ", "lang": "en"}, "text must be"),
        ({"text": "x" * 2001, "lang": "en"}, "longer than"),
        ({"text": "cat", "lang": "-v en"}, "language code"),
        ({"text": "cat", "lang": "xx"}, "unknown language"),
    ],
)
def test_bad_input_is_a_400_with_a_json_error(http, phoneme_server, body, message):
    status, answer = post(http, phoneme_server, body)
    assert status == 400
    assert message in answer["error"]


def test_identical_requests_run_espeak_once(http, phoneme_server, service):
    for _ in range(3):
        post(http, phoneme_server, {"text": "hello world", "lang": "en"})
    assert service.espeak_runs == 1
    assert service.phoneme_requests == 3


def test_keeps_connections_alive_and_counts_them(http, phoneme_server, service):
    for word in ["cat", "bat", "mat"]:
        post(http, phoneme_server, {"text": word, "lang": "en"})
    stats = orjson.loads(http.request("GET", f"{phoneme_server.url}/stats").data)
    assert stats == {"requests": 4, "phoneme_requests": 3, "connections": 1, "espeak_runs": 3}


def test_health(http, phoneme_server):
    response = http.request("GET", f"{phoneme_server.url}/health")
    assert (response.status, orjson.loads(response.data)) == (200, {"status": "ok"})


def test_fails_on_purpose_a_set_number_of_times(http, phoneme_server, service):
    service.fail_remaining = 2
    statuses = [post(http, phoneme_server, {"text": "cat"})[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
