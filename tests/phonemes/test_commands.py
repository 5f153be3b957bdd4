"""The commands: evict_phoneme_cache (report formats, dry run, bad options) and
run_phoneme_server (a real subprocess on an ephemeral port, and a busy port)."""

import os
import socket
import subprocess
import sys
from io import StringIO
from pathlib import Path

import orjson
import pytest
import urllib3
from django.core.management import CommandError, call_command

from tests.phonemes.test_services import make_entry, remaining
from tests.sessions_app.test_commands import manage

ROOT = Path(__file__).resolve().parents[2]


def evict(*args):
    out = StringIO()
    call_command("evict_phoneme_cache", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
class TestEvictPhonemeCache:
    def test_json_report(self):
        for days in (1, 40, 50):
            make_entry(f"t{days}", days_ago=days, size=10)
        report = orjson.loads(evict("--older-than-days", "30", "--format", "json"))
        assert report == {
            "expired_rows": 2,
            "lru_rows": 0,
            "deleted_bytes": 20,
            "remaining_rows": 1,
            "remaining_bytes": 10,
            "dry_run": False,
        }
        assert remaining() == ["t1"]

    def test_table_report_with_caps(self):
        for days in range(5):
            make_entry(f"t{days}", days_ago=days, size=10)
        out = evict("--max-rows", "2", "--max-bytes", "1000", "--batch", "1")
        assert "lru rows" in out
        assert out.split("lru rows")[1].split()[0] == "3"
        assert remaining() == ["t0", "t1"]

    def test_dry_run_deletes_nothing(self):
        make_entry("stale", days_ago=400)
        report = orjson.loads(evict("--dry-run", "--format", "json"))
        assert (report["expired_rows"], report["dry_run"]) == (1, True)
        assert remaining() == ["stale"]

    @pytest.mark.parametrize(
        "args",
        [
            ["--max-rows", "-1"],
            ["--max-bytes", "-1"],
            ["--older-than-days", "-2"],
            ["--batch", "0"],
        ],
    )
    def test_bad_numbers_are_a_command_error(self, args):
        make_entry("kept", days_ago=400)
        with pytest.raises(CommandError, match="must be"):
            evict(*args)
        assert remaining() == ["kept"]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["evict_phoneme_cache", "--older-than-days", "inf"],
            "CommandError: --older-than-days must be a number from 0 to 36500, got inf",
        ),
        (
            ["evict_phoneme_cache", "--older-than-days", "1e10"],
            "CommandError: --older-than-days must be a number from 0 to 36500, got 1e+10",
        ),
        (
            ["evict_phoneme_cache", "--older-than-days", "nan"],
            "CommandError: --older-than-days must be a number from 0 to 36500, got nan",
        ),
        (
            ["run_phoneme_server", "--port", "70000"],
            "CommandError: --port must be from 0 to 65535, got 70000",
        ),
    ],
    ids=["inf-days", "1e10-days", "nan-days", "port-70000"],
)
def test_manage_py_impossible_numbers_exit_one_with_one_line(tmp_path, args, line):
    done = manage(*args, tmp_path=tmp_path)
    assert (done.returncode, done.stderr.strip().splitlines()) == (1, [line])


class TestRunPhonemeServer:
    def test_serves_on_the_port_it_prints(self):
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
        command = [sys.executable, "manage.py", "run_phoneme_server", "--port", "0"]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        try:
            line = process.stdout.readline()
            url = line.rsplit(" ", 1)[-1].strip()
            assert url.startswith("http://127.0.0.1:")
            http = urllib3.PoolManager(retries=False)
            assert http.request("GET", f"{url}/health").status == 200
            answer = http.request("POST", f"{url}/phonemes", body=b'{"text": "cat"}')
            assert orjson.loads(answer.data) == {"phonemes": ["k", "a", "t"]}
        finally:
            process.terminate()
            process.wait(10)

    def test_a_busy_port_is_a_command_error(self):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            with pytest.raises(CommandError, match="cannot listen"):
                call_command("run_phoneme_server", "--port", str(port))

    @pytest.mark.parametrize("option", ["--port", "--latency-ms", "--fail-first"])
    def test_negative_numbers_are_a_command_error(self, option):
        with pytest.raises(CommandError, match=">= 0"):
            call_command("run_phoneme_server", option, "-1")
