"""/metrics: who may read it (a bearer token, or an allowed network), HTTP requests counted by
view and status through both the sync and the ASGI stacks, and Celery tasks timed and their
failures counted in a real worker."""

import asyncio

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client

from robotperf.celery import app
from sessions_app.tasks import count_sessions_for_admin
from tests.asgi import http_request
from tests.scrape import parse, scrape, value

pytestmark = pytest.mark.django_db
REQUESTS = "robotperf_http_requests_total"


@app.task(name="tests.metrics.fails")
def fails():
    raise ValueError("this task always fails")


# --- who may read it -------------------------------------------------------------------------


@pytest.fixture
def metrics_settings(settings):
    def configure(token="", networks=("127.0.0.0/8", "::1")):
        settings.ROBOTPERF_METRICS = {"TOKEN": token, "ALLOWED_NETWORKS": list(networks)}

    return configure


@pytest.mark.parametrize(
    ("remote", "networks", "status"),
    [
        ("127.0.0.1", ("127.0.0.0/8", "::1"), 200),
        ("::1", ("127.0.0.0/8", "::1"), 200),
        ("::ffff:127.0.0.1", ("127.0.0.0/8",), 200),  # IPv4 on a dual-stack socket
        ("10.1.2.3", ("127.0.0.0/8", "::1"), 403),
        ("10.1.2.3", ("10.0.0.0/8",), 200),
        ("127.0.0.1", (), 403),
        ("", ("127.0.0.0/8",), 403),  # a unix socket: no address
        ("not an address", ("127.0.0.0/8",), 403),
    ],
)
def test_without_a_token_only_allowed_networks_read_it(metrics_settings, remote, networks, status):
    metrics_settings(networks=networks)
    response = Client(REMOTE_ADDR=remote).get("/metrics")
    assert response.status_code == status
    if status == 403:
        assert b"METRICS_TOKEN" in response.content
        assert b"robotperf_" not in response.content


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        ("Bearer s3cret-token", 200),
        ("bearer s3cret-token", 200),
        ("Bearer wrong", 403),
        ("Bearer ", 403),
        ("s3cret-token", 403),
        ("Basic s3cret-token", 403),
        (None, 403),
    ],
)
def test_the_token_opens_it_from_anywhere(metrics_settings, authorization, status):
    metrics_settings(token="s3cret-token", networks=())
    headers = {} if authorization is None else {"Authorization": authorization}
    response = Client(REMOTE_ADDR="203.0.113.9").get("/metrics", headers=headers)
    assert response.status_code == status


def test_no_token_set_means_no_token_accepted(metrics_settings):
    metrics_settings(token="", networks=())
    response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics", headers={"Authorization": "Bearer "})
    assert response.status_code == 403


def test_it_answers_get_only_and_is_never_cached(client):
    assert client.post("/metrics").status_code == 405
    response = client.get("/metrics")
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "no-store" in response["Cache-Control"]


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.rstrip().endswith(b"# EOF")


def test_a_bad_allowed_network_is_a_system_check_error(metrics_settings):
    metrics_settings(networks=("127.0.0.0/8", "localhost"))
    with pytest.raises(SystemCheckError, match=r"robotperf.E004.*METRICS_ALLOWED_NETWORKS"):
        call_command("check")


# --- HTTP ------------------------------------------------------------------------------------


def test_requests_are_counted_by_view_method_and_status(client):
    before = scrape(client)
    for _ in range(3):
        client.get("/healthz")
    client.get("/api/sessions/nobody")  # 401: no token
    client.get("/no/such/page/123")
    client.generic("BREW", "/healthz")
    after = scrape(client)

    def moved(**labels):
        return value(after, REQUESTS, **labels) - value(before, REQUESTS, **labels)

    assert moved(view="healthz", method="GET", status="200") == 3
    assert moved(view="sessions_api:session", method="GET", status="401") == 1
    # An unknown path or method is one label value, whatever was asked.
    assert moved(view="<unmatched>", method="GET", status="404") == 1
    assert moved(view="healthz", method="<other>", status="405") == 1
    views = {dict(labels)["view"] for name, labels in after if name == REQUESTS}
    assert not any("123" in view or "nobody" in view for view in views)
    seconds = "robotperf_http_request_seconds_count"
    assert value(after, seconds, view="healthz") - value(before, seconds, view="healthz") == 4


def test_the_asgi_stack_counts_its_requests_too(client):
    before = scrape(client)
    status, _, _ = asyncio.run(http_request("/healthz"))
    status_404, _, _ = asyncio.run(http_request("/api/nothing-here"))
    after = scrape(client)

    assert (status, status_404) == (200, 404)
    for labels in (
        {"view": "healthz", "method": "GET", "status": "200"},
        {"view": "api_not_found", "method": "GET", "status": "404"},
    ):
        assert value(after, REQUESTS, **labels) - value(before, REQUESTS, **labels) == 1


# --- Celery ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_tasks_are_timed_and_failures_counted_in_the_worker(client, worker, celery_queue):
    task = "sessions_app.tasks.count_sessions_for_admin"
    before = scrape(client)

    count_sessions_for_admin.apply_async(queue=celery_queue).get(timeout=30)
    with pytest.raises(ValueError, match="always fails"):
        fails.apply_async(queue=celery_queue).get(timeout=30)
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    seconds = "robotperf_celery_task_seconds_count"
    assert moved(seconds, task=task, state="SUCCESS") == 1
    assert moved(seconds, task="tests.metrics.fails", state="FAILURE") == 1
    failures = "robotperf_celery_task_failures_total"
    assert moved(failures, task="tests.metrics.fails", error="ValueError") == 1
    assert moved(failures, task=task, error="ValueError") == 0


def test_scrape_parses_as_prometheus_text(client):
    # Every family is declared once, whatever the process has counted so far.
    text = client.get("/metrics").content.decode()
    declared = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(declared) == len(set(declared))
    assert parse(text)
