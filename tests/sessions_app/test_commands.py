"""`manage.py compact_sessions` and `manage.py session_stats`: options, output, errors, exit codes.

Through `call_command`, and once each way through a real `manage.py` process.
"""

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from sessions_app.models import ArchivedTurn
from tests.sessions_app.factories import save_session

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--max-turns", "20", "--keep-turns", "5"]


def run(name, *args):
    out = StringIO()
    call_command(name, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def sessions(store):
    for n in range(3):
        save_session(store, f"long-{n}", turns=30, bot_id="bot-a")
    save_session(store, "short", turns=4, bot_id="bot-b")
    return store


# --- compact_sessions ---------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("sessions")
def test_compact_prints_the_report_as_a_table():
    output = run("compact_sessions", *SMALL)

    assert output.startswith("Compaction\n")
    assert "  scanned  " in output
    lines = dict(line.split(None, 1) for line in output.splitlines()[1:] if line.strip())
    assert lines["compacted"].strip() == "3"
    assert ArchivedTurn.objects.count() == 75


@pytest.mark.django_db
def test_compact_as_json_with_every_option(sessions):
    output = run(
        "compact_sessions",
        *SMALL,
        "--max-bytes",
        "100000000",
        "--pinned",
        "1",
        "--conversation",
        "long-0",
        "--conversation",
        "long-2",
        "--limit",
        "1",
        "--rebuild-indexes",
        "--migrate-legacy",
        "--format",
        "json",
    )

    report = json.loads(output)
    assert report["compacted"] == 1
    assert report["turns_archived"] == 24
    assert report["indexes"] == {"indexed": 4, "missing": 0, "pruned": 0}
    assert sessions.client.llen(sessions.keys.turns("long-0")) == 6
    assert sessions.client.llen(sessions.keys.turns("long-1")) == 30


@pytest.mark.django_db
def test_compact_dry_run_writes_nothing(sessions):
    report = json.loads(run("compact_sessions", *SMALL, "--dry-run", "--format", "json"))

    assert report["dry_run"] is True
    assert report["compacted"] == 3
    assert report["turns_archived"] == 75
    assert sessions.client.llen(sessions.keys.turns("long-0")) == 30
    assert ArchivedTurn.objects.count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-turns", "-1"], "--max-turns must be at least 1, got -1"),
        (["--max-bytes", "0"], "--max-bytes must be at least 1, got 0"),
        (["--pinned", "-2"], "--pinned must be at least 0, got -2"),
        (["--max-turns", "10", "--keep-turns", "50"], "must not be larger than max_turns"),
        (["--limit", "0"], "--limit must be at least 1, got 0"),
    ],
)
def test_compact_bad_numbers_are_a_command_error(args, message):
    with pytest.raises(CommandError, match=message) as raised:
        run("compact_sessions", *args)

    assert "\n" not in str(raised.value)


def test_compact_with_redis_down_is_a_command_error(settings):
    settings.CACHES = {
        **settings.CACHES,
        "sessions": {**settings.CACHES["sessions"], "LOCATION": "redis://127.0.0.1:1/0"},
    }

    with pytest.raises(CommandError, match=r"Redis at redis://127.0.0.1:1/0 is unreachable"):
        run("compact_sessions")


@pytest.mark.django_db
def test_compact_a_missing_conversation_exits_non_zero_after_the_others(sessions):
    out = StringIO()
    with pytest.raises(CommandError, match="no such conversation: nosuchid"):
        call_command(
            "compact_sessions",
            *SMALL,
            "--conversation",
            "nosuchid",
            "--conversation",
            "long-1",
            stdout=out,
            stderr=StringIO(),
        )

    assert "missing: nosuchid: no such conversation" in out.getvalue()
    assert sessions.client.llen(sessions.keys.turns("long-1")) == 5


@pytest.mark.django_db
def test_compact_migrate_legacy_moves_blobs_and_reports_their_bytes(sessions):
    blob = json.dumps({"conversation_id": "old", "history": [{"role": "user"}]})
    sessions.client.set(sessions.keys.legacy("old"), blob)

    output = run("compact_sessions", *SMALL, "--migrate-legacy")

    (row,) = [line for line in output.splitlines() if "legacy migrated" in line]
    assert row.split("legacy migrated")[1].strip() == f"1 ({len(blob)} B)"
    assert not sessions.client.exists(sessions.keys.legacy("old"))
    assert sessions.load("old")["_turns"] == 1


@pytest.mark.django_db
def test_compact_without_migrate_legacy_leaves_the_blobs(sessions):
    sessions.client.set(sessions.keys.legacy("old"), json.dumps({"history": []}))

    report = json.loads(run("compact_sessions", *SMALL, "--format", "json"))

    assert report["migrated"] == 0
    assert sessions.client.exists(sessions.keys.legacy("old"))


# --- session_stats ------------------------------------------------------------------------


@pytest.mark.usefixtures("sessions")
def test_stats_as_json():
    stats = json.loads(run("session_stats", "--top", "2", "--format", "json"))

    assert stats["count"] == 4
    sizes = sorted(size for _, size in stats["largest"])
    assert len(stats["largest"]) == 2
    assert stats["max"] == sizes[-1]
    assert stats["p50"] <= stats["p95"] <= stats["max"]
    assert sum(count for _, _, count in stats["histogram"]) == 4
    per_bot = {bot: (count, size) for bot, count, size in stats["per_bot"]}
    assert per_bot["bot-a"][0] == 3
    assert per_bot["bot-b"][0] == 1
    assert sum(size for _, size in per_bot.values()) == stats["total_bytes"]


@pytest.mark.usefixtures("sessions")
def test_stats_as_a_table():
    output = run("session_stats", "--top", "3")

    assert "  sessions  4" in output
    assert "\nLargest 3\n" in output
    assert "#" in output
    assert "  bot-a  " in output
    assert "  long-" in output


def test_stats_count_legacy_blobs_and_report_corrupt_sessions(sessions, redis_client):
    blob = json.dumps({"conversation_id": "old", "history": []})
    redis_client.set(sessions.keys.legacy("old"), blob)
    redis_client.delete(sessions.keys.state("short"))
    redis_client.set(sessions.keys.state("short"), b"not a hash")

    stats = json.loads(run("session_stats", "--format", "json"))
    table = run("session_stats")

    assert (stats["legacy"], stats["legacy_bytes"]) == (1, len(blob))
    assert stats["corrupt"] == [
        {
            "conversation_id": "short",
            "key": sessions.keys.state("short"),
            "reason": stats["corrupt"][0]["reason"],
        }
    ]
    assert "holds a string" in stats["corrupt"][0]["reason"]
    assert f"legacy blobs to migrate: 1 ({len(blob)} B)" in table
    assert "Corrupt 1 (left in place)" in table
    assert redis_client.get(sessions.keys.state("short")) == b"not a hash"


def test_stats_of_an_empty_store():
    stats = json.loads(run("session_stats", "--format", "json"))

    assert (stats["count"], stats["total_bytes"], stats["largest"], stats["per_bot"]) == (
        0,
        0,
        [],
        [],
    )


def test_stats_rejects_a_negative_top():
    with pytest.raises(CommandError, match="--top must not be negative"):
        run("session_stats", "--top", "-1")


# --- a real manage.py process -------------------------------------------------------------


def manage(*args, redis_url=None, tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TEST_REDIS_URL": redis_url or os.environ.get("TEST_REDIS_URL", ""),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.usefixtures("sessions")
def test_manage_py_dry_run_prints_json_and_exits_zero(tmp_path, settings):
    url = settings.CACHES["sessions"]["LOCATION"]

    done = manage(
        "compact_sessions",
        "--dry-run",
        *SMALL,
        "--format",
        "json",
        redis_url=url,
        tmp_path=tmp_path,
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["compacted"] == 3
    assert done.stderr == ""


def test_manage_py_bad_input_exits_one_with_one_line(tmp_path):
    done = manage("compact_sessions", "--keep-turns", "-3", tmp_path=tmp_path)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "CommandError: --keep-turns must be at least 1, got -3"
    ]


def test_manage_py_with_redis_down_exits_non_zero(tmp_path):
    done = manage("compact_sessions", redis_url="redis://127.0.0.1:1/11", tmp_path=tmp_path)

    assert done.returncode == 1
    assert "Redis at redis://127.0.0.1:1/11 is unreachable" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.django_db
def test_migrate_legacy_splits_first_release_states_and_says_when_none_is_left(sessions):
    state_key = sessions.keys.state("short")
    expected = sessions.load("short", window=None)
    state = {k: v for k, v in expected.items() if k not in ("history", "bot_config", "_rev")}
    state.pop("_turns")
    fields = [name for name in sessions.client.hkeys(state_key) if name.startswith(b"s:")]
    sessions.client.hdel(state_key, *fields)
    sessions.client.hset(state_key, "doc", sessions.codec.encode(state))

    dry = json.loads(
        run("compact_sessions", *SMALL, "--migrate-legacy", "--dry-run", "--format", "json")
    )
    assert dry["docs_split"] == 1
    assert sessions.client.hexists(state_key, "doc")

    output = run("compact_sessions", *SMALL, "--migrate-legacy")

    assert "states split by field" in output
    assert "no legacy blob is left: STORE_LEGACY_READS=0" in output
    assert not sessions.client.hexists(state_key, "doc")
    assert sessions.load("short", window=None) == expected
