"""gunicorn's configuration for `make serve` (Procfile.serve), each value from the environment.

Uvicorn workers run the ASGI application, so the async store serves the API on each worker's
event loop. docs/OPERATIONS.md ("Deploying") says how many workers and why.
"""

import os
from pathlib import Path

wsgi_app = "robotperf.asgi:application"
worker_class = "uvicorn_worker.UvicornWorker"
# Where to listen: one or more host:port, comma-separated (a proxy in front terminates TLS).
bind = [address.strip() for address in os.environ.get("BIND", "127.0.0.1:8000").split(",")]
# One event loop per CPU: each serves many requests at once, all waiting on Redis or the network.
workers = int(os.environ.get("WEB_CONCURRENCY", str(os.cpu_count() or 1)))
# A worker silent this long is killed and replaced; a stop waits this long for open requests.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Replace a worker after this many requests (0: never), against slow leaks; jittered so that
# the workers do not all restart at once.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "1") != "0" else None
# gunicorn's control socket (`gunicornc`) under var/, not the one per-user default path that
# two servers on one machine (two checkouts, a test beside `make serve`) would both take.
_var = Path(os.environ.get("ROBOTPERF_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", str(_var / "gunicorn.ctl"))


def child_exit(server, worker):
    """A worker that exits takes its live gauges (tier-1 sizes) out of /metrics' sums."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
