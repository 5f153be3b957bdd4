"""The production processes of `make serve` on free loopback ports, for the load test and the
fault drills: gunicorn with uvicorn workers (DEBUG off) and the phoneme server.

Each process is started with the production environment and stopped by its own pid (SIGTERM,
then SIGKILL), never by name. Redis and the database are the caller's: their URLs are given.
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The only variables taken from the caller's environment; the rest is production's.
KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServedStack:
    """gunicorn (``workers`` uvicorn workers) and the phoneme server, on ports of their own,
    with ``var_dir`` as their var/ and Redis and the database at the URLs given."""

    def __init__(self, var_dir, *, redis_url, database_url=None, workers=2, **environment):
        self.var_dir = Path(var_dir)
        self.port, self.phoneme_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.phoneme_url = f"http://127.0.0.1:{self.phoneme_port}"
        self.api_token = secrets.token_urlsafe(32)
        self.env = {name: os.environ[name] for name in KEPT if name in os.environ}
        self.env.update(
            DJANGO_SETTINGS_MODULE="robotperf.settings",
            DEBUG="0",
            SECRET_KEY=secrets.token_urlsafe(50),
            API_TOKEN=self.api_token,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            REDIS_URL=redis_url,
            CELERY_BROKER_URL=redis_url,
            PHONEME_URL=self.phoneme_url,
            ROBOTPERF_VAR_DIR=str(self.var_dir),
            BIND=f"127.0.0.1:{self.port}",
            WEB_CONCURRENCY=str(workers),
            GUNICORN_ACCESS_LOG="0",
            LOG_LEVEL="ERROR",
            **({"DATABASE_URL": database_url} if database_url else {}),
            **environment,
        )
        self.web = self.phonemes = None

    def __enter__(self):
        self.var_dir.mkdir(parents=True, exist_ok=True)
        for command in (("migrate", "--noinput"), ("collectstatic", "--noinput")):
            self.manage(*command)
        self.start_phonemes()
        self.start_web()
        return self

    def __exit__(self, *exc):
        self.stop_web()
        self.stop_phonemes()

    def manage(self, *args):
        done = subprocess.run(
            [sys.executable, "manage.py", *args, "-v", "0"],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {done.stderr[-2000:]}")

    def start_web(self):
        gunicorn = ROOT / ".venv" / "bin" / "gunicorn"
        self.web = self._start([str(gunicorn), "--config", "robotperf/gunicorn.conf.py"])
        self._wait(f"{self.url}/healthz", self.web)

    def stop_web(self):
        self.web = _stop(self.web)

    def start_phonemes(self):
        command = [
            sys.executable,
            "manage.py",
            "run_phoneme_server",
            "--port",
            str(self.phoneme_port),
        ]
        self.phonemes = self._start(command)
        self._wait(f"{self.phoneme_url}/health", self.phonemes)

    def stop_phonemes(self, *, sig=signal.SIGTERM):
        self.phonemes = _stop(self.phonemes, sig)

    def worker_pids(self):
        """The pids of gunicorn's workers (the master's children)."""
        children = Path(f"/proc/{self.web.pid}/task/{self.web.pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    def _start(self, command):
        return subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    @staticmethod
    def _wait(url, process, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        raise RuntimeError(f"nothing answered at {url}")


def rss_bytes(pid):
    """The resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def _stop(process, sig=signal.SIGTERM):
    if process is None or process.poll() is not None:
        return None
    process.send_signal(sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return None
