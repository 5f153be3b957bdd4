"""The production web process as `make serve` starts it: collectstatic, then gunicorn with a
uvicorn worker on a free loopback port, DEBUG off. It serves /healthz, the admin's login page
and the admin's CSS under its hashed name (whitenoise), then stops on SIGTERM."""

import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.redis_servers import free_port
from tests.robotperf.production import ROOT, manage, production_env

GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"


def get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.headers, response.read()


def wait_until_up(url, process):
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            return get(url)
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered at {url}")


@pytest.fixture
def served(tmp_path):
    """The base URL of a running production web process, stopped afterwards."""
    port = free_port()
    env = production_env(
        tmp_path, BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="1", GUNICORN_ACCESS_LOG="0"
    )
    collected = manage(env, "collectstatic", "--noinput", "-v", "0")
    assert collected.returncode == 0, collected.stderr
    process = subprocess.Popen(
        [str(GUNICORN), "--config", "robotperf/gunicorn.conf.py"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/healthz", process)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            process.kill()
            process.stderr.close()


def test_the_production_web_process_serves_the_admin_and_its_hashed_static_files(served, tmp_path):
    status, _, body = get(f"{served}/healthz")
    assert (status, body) == (200, b'{"status": "ok"}')
    # Its control socket is its own, under its var/, not the per-user default path.
    assert (tmp_path / "gunicorn.ctl").is_socket()

    status, headers, page = get(f"{served}/admin/login/")
    assert status == 200
    assert "uvicorn" in headers["server"]
    css = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page)
    assert css, "the admin links its CSS by its hashed name (the collectstatic manifest)"

    status, headers, _ = get(served + css.group(1).decode())
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert "immutable" in headers["Cache-Control"]
