"""scripts/ensure_redis.py on a free loopback port: it starts a throwaway Redis, records who
started it, and stops only what that owner started."""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.redis_servers import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure_redis.py"
pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")


def ensure(cwd, *args):
    """Run the script the way the Makefile does: from the checkout, VAR_DIR relative."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=30
    )


def answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16) == b"+PONG\r\n"
    except OSError:
        return False


@pytest.fixture
def port(tmp_path):
    port = free_port()
    yield port
    ensure(tmp_path, "--stop", "var")  # whatever a failed test left running


def test_starts_records_and_stops_only_for_its_owner(tmp_path, port):
    url = f"redis://127.0.0.1:{port}/3"
    started = ensure(tmp_path, "--owner", "make-1", url, "var")
    assert started.returncode == 0, started.stderr
    assert answers(port)
    record = tmp_path / "var" / "redis" / str(port)
    assert (record / "started-by").read_text() == "make-1\n"
    # The pidfile lands where asked although the server changed into its --dir first.
    pid = int((record / "redis.pid").read_text())
    assert f":{port}" in Path(f"/proc/{pid}/cmdline").read_text()

    # Another make finds it answering: it says it uses that one, starts nothing, so it has
    # nothing to stop. The make that started it is not told again.
    again = ensure(tmp_path, "--owner", "make-2", url, "var")
    assert again.returncode == 0
    assert f"using the Redis already running at 127.0.0.1:{port} (redis://127.0.0.1:{port}/3)" in (
        again.stderr
    )
    assert "using the Redis" not in ensure(tmp_path, "--owner", "make-1", url, "var").stderr
    assert ensure(tmp_path, "--stop", "--owner", "make-2", "var").returncode == 0
    assert answers(port)
    assert (record / "started-by").read_text() == "make-1\n"

    stopped = ensure(tmp_path, "--stop", "--owner", "make-1", "var")
    assert stopped.returncode == 0, stopped.stderr
    assert not answers(port)
    assert not (record / "started-by").exists()


def test_a_redis_it_did_not_start_is_never_stopped(tmp_path, port):
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not answers(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        url = f"redis://127.0.0.1:{port}/0"
        assert ensure(tmp_path, "--owner", "make-1", url, "var").returncode == 0
        assert not (tmp_path / "var" / "redis" / str(port) / "started-by").exists()
        assert ensure(tmp_path, "--stop", "var").returncode == 0
        assert answers(port)
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=10)
