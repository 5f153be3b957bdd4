"""/metrics: what every process of the project counts, in Prometheus's text format.

Each app defines its own metrics (sessions_app.metrics, phonemes.metrics); this module adds the
project's (HTTP requests, Celery tasks) and exposes them all. Under gunicorn and Celery
(``PROMETHEUS_MULTIPROC_DIR`` set, as `make serve` does) every process writes its values into
that directory and a scrape adds them up; without it (runserver, tests) a scrape reads this
process's registry. The census and the phoneme table are read at scrape time, by the process
that answers it.
"""

import functools
import ipaddress
import os
import secrets
import time

from celery.signals import task_failure, task_postrun, task_prerun, worker_process_shutdown
from django.conf import settings
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    multiprocess,
)
from prometheus_client.exposition import choose_encoder

from phonemes.metrics import CacheTableCollector
from sessions_app.metrics import CensusCollector

HTTP_REQUESTS = Counter(
    "robotperf_http_requests",
    "HTTP requests answered, by view (its URL name), method and status code.",
    ["view", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "robotperf_http_request_seconds",
    "Duration of HTTP requests, by view (its URL name).",
    ["view"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TASK_SECONDS = Histogram(
    "robotperf_celery_task_seconds",
    "Duration of Celery tasks in a worker, by task and final state (SUCCESS, FAILURE, RETRY).",
    ["task", "state"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600),
)
TASK_FAILURES = Counter(
    "robotperf_celery_task_failures",
    "Celery tasks that raised, by task and exception class.",
    ["task", "error"],
)
# A `_created` series per family doubles the output and serves no query (multiprocess mode has
# none anyway).
disable_created_metrics()
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Read at scrape time, by the process that answers; never written to the multiprocess files.
LIVE_COLLECTORS = (CensusCollector(), CacheTableCollector())


def multiprocess_dir():
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def exposition(accept=""):
    """``(body, content type)`` of a scrape: every process's values and the live collectors, in
    the format ``accept`` asks for (OpenMetrics), else Prometheus's text format."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(ThisProcess())
    for collector in LIVE_COLLECTORS:
        registry.register(collector)
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type


class ThisProcess:
    """The default registry of this process (metrics, process and Python collectors)."""

    def collect(self):
        return REGISTRY.collect()


def allowed(request):
    """Whether ``request`` may read /metrics: it carries ``METRICS_TOKEN`` as a bearer token
    (when one is set), or it comes from an address in ``METRICS_ALLOWED_NETWORKS``."""
    config = settings.ROBOTPERF_METRICS
    token = config["TOKEN"]
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if (
        token
        and scheme.lower() == "bearer"
        and secrets.compare_digest(given.encode(), token.encode())
    ):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:  # a unix socket, or no address at all
        return False
    address = getattr(address, "ipv4_mapped", None) or address
    return any(address in network for network in networks(tuple(config["ALLOWED_NETWORKS"])))


@functools.cache
def networks(spelled):
    """The networks of ``METRICS_ALLOWED_NETWORKS`` (a system check refuses a bad one)."""
    return [ipaddress.ip_network(network, strict=False) for network in spelled]


# --- HTTP --------------------------------------------------------------------------------


def view_name(request):
    """The URL pattern's name (bounded: one per route, never the raw path)."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return match.view_name
    if request.path_info.startswith(settings.STATIC_URL):
        return "<static>"
    return "<unmatched>"


def count_request(request, response, seconds):
    view = view_name(request)
    method = request.method if request.method in METHODS else "<other>"
    HTTP_REQUESTS.labels(view, method, str(response.status_code)).inc()
    HTTP_SECONDS.labels(view).observe(seconds)


# --- Celery ------------------------------------------------------------------------------

_started = {}
"""task id -> perf_counter at its start, in this worker process."""


def task_started(task_id=None, **kwargs):
    _started[task_id] = time.perf_counter()


def task_ended(task_id=None, task=None, state=None, **kwargs):
    started = _started.pop(task_id, None)
    if started is not None and task is not None:
        TASK_SECONDS.labels(task.name, state or "UNKNOWN").observe(time.perf_counter() - started)


def task_failed(sender=None, exception=None, **kwargs):
    TASK_FAILURES.labels(getattr(sender, "name", "<unknown>"), type(exception).__name__).inc()


def process_ended(**kwargs):
    """A Celery worker process that ends takes its live gauges (tier-1 sizes) with it."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid())


def connect_celery_signals():
    task_prerun.connect(task_started, weak=False, dispatch_uid="robotperf.metrics.prerun")
    task_postrun.connect(task_ended, weak=False, dispatch_uid="robotperf.metrics.postrun")
    task_failure.connect(task_failed, weak=False, dispatch_uid="robotperf.metrics.failure")
    worker_process_shutdown.connect(
        process_ended, weak=False, dispatch_uid="robotperf.metrics.exit"
    )
