"""The production stack's metrics: processes writing into one PROMETHEUS_MULTIPROC_DIR (two
robot-like processes, two gunicorn workers) are added up by the /metrics of whichever worker
answers; a worker that exits is marked dead; the web workers export their spans over OTLP."""

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.redis_servers import free_port
from tests.robotperf.otlp import Receiver
from tests.robotperf.production import ROOT, manage, production_env
from tests.robotperf.test_serve import GUNICORN, get, wait_until_up
from tests.scrape import parse, value

LOADS = 5
WRITER = f"""
import sys
import django
django.setup()
from sessions_app.store import get_store
store = get_store()
cid = sys.argv[1]
store.save({{"conversation_id": cid, "bot_id": "b", "history": [{{"role": "user"}}]}})
for _ in range({LOADS}):
    store.load(cid, window=5)
"""
LOAD = "robot-v2.load-conversation"


def pids(directory, prefix):
    return {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob(f"{prefix}_*.db")}


def workers_of(master):
    found = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


@pytest.fixture
def stack(tmp_path, redis_client):
    """Two writer processes that have ended, then gunicorn (2 workers), on one metrics dir."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    port = free_port()
    env = production_env(
        tmp_path,
        BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
        GUNICORN_ACCESS_LOG="0",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    for args in (("migrate", "--noinput", "-v", "0"), ("collectstatic", "--noinput", "-v", "0")):
        done = manage(env, *args, timeout=120)
        assert done.returncode == 0, done.stderr
    for cid in ("robot-1", "robot-2"):
        done = subprocess.run(
            [sys.executable, "-c", WRITER, cid],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    with Receiver() as otlp:
        served = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        process = subprocess.Popen(
            [str(GUNICORN), "--config", "robotperf/gunicorn.conf.py"],
            cwd=ROOT, env=served, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(f"{base}/healthz", process)
            yield base, metrics_dir, process, env["API_TOKEN"], otlp
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            finally:
                process.kill()
                process.stderr.close()


def scrape(base):
    status, _, body = get(f"{base}/metrics")
    assert status == 200
    return parse(body.decode())


def test_every_process_is_counted_by_one_scrape(stack):
    base, metrics_dir, process, _, _ = stack
    for _ in range(19):  # each on a new connection: both workers answer some
        get(f"{base}/healthz")
    samples = scrape(base)

    # The two writers' loads, though both have ended and neither serves HTTP.
    assert value(samples, "robotperf_store_call_seconds_count", call=LOAD) == 2 * LOADS
    # Every /healthz, whichever worker answered (wait_until_up made the 20th).
    healthz = {"view": "healthz", "method": "GET", "status": "200"}
    assert value(samples, "robotperf_http_requests_total", **healthz) == 20
    # Two writers and two workers wrote their own files (and the commands before them).
    workers = workers_of(process.pid)
    assert len(workers) == 2
    assert workers <= pids(metrics_dir, "counter")
    assert len(pids(metrics_dir, "histogram")) >= 4
    # The live collectors answered too, read at scrape time.
    assert value(samples, "robotperf_phoneme_cache_rows") == 0
    names = {name for name, _ in samples}
    assert "robotperf_census_sessions" not in names  # no census was counted


def test_a_worker_that_exits_is_marked_dead_and_its_counts_kept(stack):
    base, metrics_dir, process, _, _ = stack
    for _ in range(9):
        get(f"{base}/healthz")
    (victim, *_) = workers_of(process.pid)
    assert victim in pids(metrics_dir, "gauge_livesum")

    os.kill(victim, signal.SIGTERM)
    deadline = time.monotonic() + 60  # a busy machine starts a worker slowly
    while time.monotonic() < deadline:
        if victim not in workers_of(process.pid) and len(workers_of(process.pid)) == 2:
            break
        time.sleep(0.05)
    wait_until_up(f"{base}/healthz", process)

    assert victim not in pids(metrics_dir, "gauge_livesum")  # its live gauges: gone
    assert victim in pids(metrics_dir, "counter")  # its counts: kept
    samples = scrape(base)
    healthz = {"view": "healthz", "method": "GET", "status": "200"}
    assert value(samples, "robotperf_http_requests_total", **healthz) == 11


def test_the_web_workers_export_the_api_loads_as_spans(stack):
    base, _, _, token, otlp = stack
    request = urllib.request.Request(
        f"{base}/api/sessions/robot-1", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200

    spans = otlp.wait_for(LOAD)
    assert ("robotperf", LOAD, None) in spans
    assert ("robotperf", "redis", LOAD) in spans
