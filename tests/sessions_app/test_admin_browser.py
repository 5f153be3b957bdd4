"""The sessions admin in a real Chromium, as an operator uses it: find the largest session, see
where its bytes are and where a load's time goes, trim it, then read the dashboard in Vietnamese;
compact now and see the dashboard re-counted, restore a deleted session from its page, and read
a session's page in Vietnamese with no English string of ours.

With ROBOTPERF_SCREENSHOTS=<dir> it also saves the screenshots the README shows (docs/img).
"""

import os
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from playwright.sync_api import expect

from robotperf.celery import app
from sessions_app import seeding
from sessions_app.demo import make_session
from sessions_app.models import ArchivedTurn
from tests.sessions_app.admin_pages import log_in
from tests.sessions_app.test_admin_vietnamese import texts

# Playwright's sync API runs an event loop in this thread; the ORM calls here are still sync.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

SCREENSHOTS = os.environ.get("ROBOTPERF_SCREENSHOTS")
LARGEST = "demo-long-000000"


@pytest.fixture
def demo_sessions(store):
    """Demo sessions as `make run` seeds them, fewer: everyday ones and one long one."""
    seeding.save_many(store, (make_session(i, steps=20, turns=10 + 7 * i) for i in range(24)))
    store.save(make_session(0, steps=40, turns=400, prefix="demo-long-"))
    return store


def shoot(page, name):
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


@pytest.mark.browser
def test_operator_finds_the_largest_session_profiles_and_trims_it(page, live_server, demo_sessions):
    store = demo_sessions
    log_in(page, live_server)

    # The admin index links to the dashboard.
    page.click("#sessions-dashboard-link th a")
    expect(page.locator("h1")).to_have_text("Session sizes")
    expect(page.locator("#total-sessions")).to_have_text("25")
    bands = page.locator("#histogram svg g.band")
    assert bands.count() >= 2
    counts = [int(bands.nth(i).get_attribute("data-sessions")) for i in range(bands.count())]
    assert sum(counts) == 25
    first = page.locator("#largest tbody tr").first
    expect(first.locator("th a")).to_have_text(LARGEST)
    expect(first.locator("td.field-turns")).to_have_text("400")
    expect(page.locator("#per-bot tbody tr")).to_have_count(7)  # 6 bots; one at 2 lengths
    shoot(page, "dashboard")

    # The largest session: most of its bytes are in the history.
    first.locator("th a").click()
    expect(page.locator("h1")).to_have_text(LARGEST)
    expect(page.locator("#session-turns")).to_have_text("400")
    parts = page.locator("#parts g.part")
    sizes = {
        parts.nth(i).get_attribute("data-part"): int(parts.nth(i).get_attribute("data-bytes"))
        for i in range(parts.count())
    }
    history = sizes.pop("history (turns list)")
    assert history > max(sizes.values())
    assert sizes["record"] > sizes["input_slots"]
    expect(page.locator("#last-turns tbody tr")).to_have_count(50)
    shoot(page, "detail")

    # Where a load's time goes, beside the old GET + json.loads of the same session.
    page.click("#profile-link")
    page.fill("#id_runs", "10")
    page.click("#profile-submit")
    expect(page.locator("#profile-result")).to_have_attribute("data-runs", "10")
    phases = page.locator("#phases tr.phase")
    names = [phases.nth(i).get_attribute("data-phase") for i in range(phases.count())]
    assert names == ["redis", "decode", "assemble", "unattributed"]
    assert float(page.locator("#legacy-json").get_attribute("data-median")) > 0
    expect(page.locator("#waterfall rect")).to_have_count(4)
    expect(page.locator("#scratch-note")).to_contain_text("deleted afterwards")
    assert not list(store.client.scan_iter(match=store.keys.scratch("*")))
    shoot(page, "profile")

    # Trim it to 10 turns through the confirm page.
    page.locator(".breadcrumbs a", has_text=LARGEST).click()
    page.click("#trim-link")
    page.fill("#id_keep", "10")
    page.fill("#id_pinned", "0")
    page.click("#confirm-submit")
    expect(page.locator("ul.messagelist")).to_contain_text("kept 10 turns, archived 390")
    expect(page.locator("#session-turns")).to_have_text("10")
    expect(page.locator("#session-archived")).to_have_text("390")
    assert store.client.llen(store.keys.turns(LARGEST)) == 10
    seqs = ArchivedTurn.objects.filter(conversation_id=LARGEST).values_list("seq", flat=True)
    assert sorted(seqs) == list(range(390))

    # The same dashboard in Vietnamese.
    page.select_option("#language-select", "vi")
    page.click("#language-submit")
    page.goto(f"{live_server.url}/admin/sessions_app/conversationsession/dashboard/")
    expect(page.locator("h1")).to_have_text("Kích thước phiên hội thoại")
    expect(page.locator("#totals caption")).to_have_text("Các phiên trong Redis")
    expect(page.locator("#largest tbody tr").first.locator("th a")).not_to_have_text(LARGEST)


@pytest.fixture
def default_queue_worker():
    """A worker on the default queue, which "Compact now" sends to; the broker is the tests'
    own Redis database, so no other run's worker takes the task. Named: a worker started with
    queues narrows the app's own list, which a later worker would otherwise consume from."""
    queue = app.conf.task_default_queue
    with start_worker(
        app, pool="threads", concurrency=1, queues=[queue], perform_ping_check=False
    ) as running:
        yield running


@pytest.mark.browser
@pytest.mark.usefixtures("default_queue_worker")
def test_operator_compacts_now_restores_from_the_page_and_reads_vietnamese(
    page, live_server, demo_sessions, settings
):
    store = demo_sessions
    # Only the long session (400 turns) is oversized; the everyday ones have up to 171.
    settings.ROBOTPERF_COMPACTION = {**settings.ROBOTPERF_COMPACTION, "MAX_TURNS": 200}
    log_in(page, live_server)
    dashboard = f"{live_server.url}/admin/sessions_app/conversationsession/dashboard/"

    # Compact now: the confirm page shows the plan; the dashboard follows the task, and shows
    # the census re-counted when it has finished.
    page.goto(dashboard)
    expect(page.locator("#oversized")).to_have_text("1")
    page.click("#compact-now")
    expect(page.locator("#plan-compacted")).to_have_text("1")
    page.click("#confirm-submit")
    expect(page.locator("#queued-task")).to_have_attribute("data-state", "SUCCESS", timeout=30_000)
    expect(page.locator("#oversized")).to_have_text("0")
    expect(page.locator("#census-age")).to_contain_text("counted just now")

    # Delete a session, then restore it from its own page in one click.
    page.goto(f"{live_server.url}/admin/sessions_app/conversationsession/{LARGEST}/delete/")
    page.click("#confirm-submit")
    page.goto(f"{live_server.url}/admin/sessions_app/conversationsession/{LARGEST}/change/")
    page.click("#restore-button")
    expect(page.locator("ul.messagelist")).to_contain_text(f"{LARGEST}: restored")
    expect(page.locator("#session-turns")).not_to_have_text("0")
    assert store.client.exists(store.keys.state(LARGEST))

    # The language menu is on the archive's pages too; our pages read Vietnamese throughout.
    page.goto(f"{live_server.url}/admin/sessions_app/archivedsession/")
    page.select_option("#language-select", "vi")
    page.click("#language-submit")
    expect(page.locator("html")).to_have_attribute("lang", "vi")
    detail = f"{live_server.url}/admin/sessions_app/conversationsession/{LARGEST}/change/"
    page.goto(detail)
    vietnamese = page.content()
    page.select_option("#language-select", "en")
    page.click("#language-submit")
    page.goto(detail)
    english = page.content()
    same = sorted(texts(english) & texts(vietnamese))
    assert same == [], same
    assert "Where the bytes are" in english
