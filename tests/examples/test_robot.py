"""The example robot (examples/robot/) as a process of its own on loopback: a conversation
started, three messages, and the conversation loaded back, all through HTTP."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import urllib3
from django.conf import settings

from sessions_app import slow_calls
from tests.redis_servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def start(url, **environ):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "examples/robot/robot.py", "--redis-url", url, "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    http = urllib3.PoolManager(retries=False)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            http.request("GET", f"{base}/conversations/none")
            break
        except urllib3.exceptions.HTTPError:
            time.sleep(0.05)
    return process, http, base


@pytest.fixture
def robot():
    process, http, base = start(settings.CACHES["sessions"]["LOCATION"])
    yield http, base
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def robot_logging_every_call():
    process, http, base = start(settings.CACHES["sessions"]["LOCATION"], SLOW_CALL_THRESHOLD_MS="0")
    yield http, base
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def robot_without_redis():
    process, http, base = start(f"redis://127.0.0.1:{free_port()}/0")
    yield http, base
    process.terminate()
    process.wait(timeout=10)


def test_a_conversation_through_the_example_robot(robot):
    http, base = robot
    started = http.request("PUT", f"{base}/conversations/c1", json={"bot_id": 7})
    replies = [
        http.request("POST", f"{base}/conversations/c1/messages", json={"text": text}).json()
        for text in ("Xin chào", "Tôi tên là Minh", "Tạm biệt")
    ]
    loaded = http.request("GET", f"{base}/conversations/c1?window=4").json()
    missing = http.request("POST", f"{base}/conversations/nobody/messages", json={"text": "?"})

    assert started.status == 201
    assert [reply["rev"] for reply in replies] == [2, 3, 4]
    assert replies[2]["reply"] == "(3) Bạn nói: Tạm biệt"
    assert loaded["record"]["LOOP_COUNT"] == {"step_0000": {"count": 3}}
    assert [turn["seq"] for turn in loaded["history"]] == [3, 4, 5, 6]
    assert [turn["role"] for turn in loaded["history"]] == ["user", "assistant"] * 2
    assert loaded["history"][-2]["content"] == "Tạm biệt"
    assert missing.status == 404


def test_redis_unreachable_is_a_503_to_retry(robot_without_redis):
    http, base = robot_without_redis

    answer = http.request("POST", f"{base}/conversations/c1/messages", json={"text": "hi"})

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "1"
    assert b"is unreachable" in answer.data


def test_the_robot_logs_its_slow_calls_where_the_admin_reads_them(robot_logging_every_call):
    http, base = robot_logging_every_call
    http.request("PUT", f"{base}/conversations/c1", json={"bot_id": 7})
    http.request("POST", f"{base}/conversations/c1/messages", json={"text": "Xin chào"})

    deadline = time.monotonic() + 10
    while len(slow_calls.slow_calls(conversation_id="c1")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)  # its writer thread sends them within moments
    calls = slow_calls.slow_calls(conversation_id="c1")
    assert [call.call for call in calls] == [
        "robot-v2.update-state",
        "robot-v2.load-conversation",
        "robot-v2.save-conversation",
    ]
    assert {call.name for call in calls} == {"robot"}
