"""A test run leaves no file of its SQLite test database behind, its WAL files included, even
when a thread (a live server's, a worker's) still holds a connection when the run ends."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import threading

import pytest
from django.contrib.auth.models import User


@pytest.mark.django_db(transaction=True)
def test_a_thread_holds_a_connection_to_the_end():
    opened = threading.Event()

    def hold():
        User.objects.count()  # this thread's connection, never closed
        opened.set()
        threading.Event().wait()

    threading.Thread(target=hold, daemon=True).start()
    assert opened.wait(10)
"""


def test_a_run_leaves_no_sqlite_files_of_its_test_database(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_holder.py").write_text(HOLDER)
    var = tmp_path / "var"
    var.mkdir()
    env = {**os.environ, "ROBOTPERF_VAR_DIR": str(var), "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    options = ["-q", "-p", "no:cacheprovider", "-p", "tests.conftest"]
    options += ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path)]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *options, "tests/test_holder.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(p.name for p in var.iterdir() if "sqlite3" in p.name) == []
