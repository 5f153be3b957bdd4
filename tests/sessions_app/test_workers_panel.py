"""The dashboard's workers panel with a real Celery worker running a task, with none, and with
the broker unreachable: what it says, and that it never takes much longer than its timeout; and
the panel in the dashboard's frame, in a real Chromium."""

import os
import threading
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from playwright.sync_api import expect

from robotperf.celery import app
from tests.redis_servers import free_port
from tests.sessions_app.admin_pages import log_in, url

pytestmark = pytest.mark.django_db(transaction=True)
TIMEOUT = 0.5
# Playwright's sync API runs an event loop in this thread; the ORM calls here are still sync.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
released = threading.Event()


@app.task(name="tests.sessions_app.wait_for_release")
def wait_for_release():
    released.wait(30)


@pytest.fixture(autouse=True)
def short_timeout(settings):
    settings.ADMIN_WORKERS_TIMEOUT = TIMEOUT


@pytest.fixture
def remote_control():
    """The tests' workers take no remote control (tests/settings.py): this one answers."""
    before = app.conf.worker_enable_remote_control
    app.conf.worker_enable_remote_control = True
    yield
    app.conf.worker_enable_remote_control = before


@pytest.fixture
def worker(celery_queue, remote_control):
    released.clear()
    with start_worker(
        app, pool="threads", concurrency=2, queues=[celery_queue], perform_ping_check=False
    ) as running:
        yield running
        released.set()


def panel(client):
    started = time.monotonic()
    response = client.get(url("workers"))
    assert response.status_code == 200
    return response.content.decode(), time.monotonic() - started


def test_a_worker_answers_with_what_it_runs_and_the_queue_waiting(
    admin_client, worker, celery_queue
):
    running = wait_for_release.apply_async(queue=celery_queue)
    for _ in range(2):  # to the default queue, which no worker of this test takes
        wait_for_release.delay()
    schedule = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.create(
        name="beat", task="x", interval=schedule, last_run_at=timezone.now()
    )
    deadline = time.monotonic() + 10
    while app.AsyncResult(running.id).state != "STARTED" and time.monotonic() < deadline:
        time.sleep(0.05)

    page, _ = panel(admin_client)

    assert 'data-answered="1"' in page
    assert worker.hostname in page
    assert "tests.sessions_app.wait_for_release" in page
    assert running.id in page
    assert 'data-queued="2"' in page
    assert "2 tasks waiting" in page
    assert "beat last sent a job just now" in page
    assert "No worker answers" not in page


def test_no_worker_answers_within_the_timeout(admin_client):
    page, seconds = panel(admin_client)

    assert 'id="no-worker"' in page
    assert f"No worker answers (waited {TIMEOUT} s)" in page
    assert 'data-queued="0"' in page
    assert "beat has sent no job yet" in page
    assert TIMEOUT <= seconds < TIMEOUT + 1


def test_an_unreachable_broker_is_said_at_once(admin_client):
    before = app.conf.broker_write_url
    app.conf.broker_write_url = f"redis://127.0.0.1:{free_port()}/0"
    try:
        page, seconds = panel(admin_client)
    finally:
        app.conf.broker_write_url = before

    assert 'id="broker-unreachable"' in page
    assert "Broker unreachable: OperationalError" in page
    assert "Connection refused" in page
    assert seconds < TIMEOUT + 1


def test_the_dashboard_frames_the_panel_and_does_not_wait_for_it(admin_client):
    response = admin_client.get(url("dashboard"))
    assert f'<iframe src="{url("workers")}"' in response.content.decode()
    assert admin_client.get(url("workers"))["X-Frame-Options"] == "SAMEORIGIN"


@pytest.mark.browser
def test_the_dashboard_shows_a_running_worker_by_name(page, live_server, worker, celery_queue):
    running = wait_for_release.apply_async(queue=celery_queue)
    deadline = time.monotonic() + 10
    while app.AsyncResult(running.id).state != "STARTED" and time.monotonic() < deadline:
        time.sleep(0.05)
    log_in(page, live_server)
    page.goto(live_server.url + url("dashboard"))

    panel = page.frame_locator("#workers iframe")
    expect(panel.locator("body")).to_have_attribute("data-answered", "1")
    expect(panel.locator("tr.worker th.field-name")).to_have_text(worker.hostname)
    expect(panel.locator("tr.worker .task")).to_have_text("tests.sessions_app.wait_for_release")
    expect(panel.locator("#no-worker")).to_have_count(0)
    # The frame shows the whole panel: nothing of it is cut off below.
    height = page.locator("#workers iframe").evaluate("frame => frame.clientHeight")
    content = panel.locator("html").evaluate("html => html.scrollHeight")
    assert content <= height, (content, height)
