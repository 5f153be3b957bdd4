"""The "Slow calls" page and the dashboard's live latency in a real Chromium, as an operator
reaches and uses them: real calls logged (threshold 0), filtered through the form, each row's
links followed; the minutes recorded drawn on the dashboard beside the workers panel; the page
in Vietnamese; and ids and call names holding markup shown as text, never run."""

import os
import time

import pytest
from playwright.sync_api import expect

from convstore.observe import CallRecord
from sessions_app import slow_calls
from tests.sessions_app.admin_pages import BIG, log_in, url
from tests.sessions_app.factories import save_session
from tests.sessions_app.test_admin_vietnamese import texts

# Playwright's sync API runs an event loop in this thread; the ORM calls here are still sync.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

LOAD = "robot-v2.load-conversation"
SAVE = "robot-v2.save-conversation"
HOSTILE_ID = "<script>window.pwned = 'id'</script>"
LINES = "e => { const r = new Range(); r.selectNodeContents(e); return r.getClientRects().length }"
"""The lines an element's text takes."""
HOSTILE_CALL = "<img src=x onerror=\"window.pwned = 'call'\">"


def rows(page):
    """(call, conversation id) of each row of the Slow calls page, top to bottom."""
    shown = page.locator("#slow-calls tbody tr.slow-call")
    calls = shown.locator("td.field-call").all_inner_texts()
    ids = [row.locator("th.field-id a.session-link").inner_text() for row in shown.all()]
    return list(zip(calls, ids, strict=True))


@pytest.mark.browser
def test_operator_lists_filters_and_follows_slow_calls(page, live_server, store, slow_log):
    save_session(store, BIG, turns=30)
    save_session(store, "small-1", turns=3)
    store.load("small-1", window=2)
    store.load(BIG, window=20)
    store.load(BIG, window=None)
    assert slow_log.flush()
    log_in(page, live_server)

    # From the admin index, newest first.
    page.locator("#sessions-dashboard-link a", has_text="Slow calls").click()
    expect(page.locator("h1")).to_have_text("Slow calls")
    assert rows(page) == [
        (LOAD, BIG),
        (LOAD, BIG),
        (LOAD, "small-1"),
        (SAVE, "small-1"),
        (SAVE, BIG),
    ]
    ids = page.locator("#slow-calls tr.slow-call").evaluate_all(
        "rows => rows.map(r => r.dataset.id)"
    )
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))), reverse=True)
    newest = page.locator("#slow-calls tr.slow-call").first
    expect(newest.locator("td.field-window")).to_have_text("every turn")
    expect(newest.locator("td.field-phases")).to_contain_text("redis ")
    expect(page.locator("#slow-calls caption")).to_have_text("5 slow calls, newest first")
    expect(page.locator("#clear-filters")).to_have_count(0)

    # Filter by call, then by session too: the form keeps both.
    page.select_option("#id_call", LOAD)
    page.click("#slow-calls-filter input[type=submit]")
    expect(page.locator("#slow-calls caption")).to_have_text("3 slow calls, newest first")
    assert rows(page) == [(LOAD, BIG), (LOAD, BIG), (LOAD, "small-1")]
    page.fill("#id_conversation_id", "small-1")
    page.click("#slow-calls-filter input[type=submit]")
    expect(page.locator("#slow-calls caption")).to_have_text("1 slow call, newest first")
    assert rows(page) == [(LOAD, "small-1")]
    expect(page.locator("#id_call")).to_have_value(LOAD)
    expect(page.locator("#id_conversation_id")).to_have_value("small-1")
    # By session alone, then cleared.
    page.select_option("#id_call", "")
    page.fill("#id_conversation_id", BIG)
    page.click("#slow-calls-filter input[type=submit]")
    assert rows(page) == [(LOAD, BIG), (LOAD, BIG), (SAVE, BIG)]
    page.click("#clear-filters")
    expect(page.locator("#slow-calls caption")).to_have_text("5 slow calls, newest first")
    expect(page.locator("#id_conversation_id")).to_have_value("")

    # A row's links open its session's page and its load profile (the id needs quoting).
    row = page.locator("#slow-calls tr.slow-call").first
    row.locator("a.session-link").click()
    expect(page.locator("h1")).to_have_text(BIG)
    expect(page.locator("#session-turns")).to_have_text("30")
    page.go_back()
    page.locator("#slow-calls tr.slow-call").first.locator("a.profile-link").click()
    assert page.url == live_server.url + url("profile", BIG)
    page.fill("#id_runs", "2")
    page.click("#profile-submit")
    expect(page.locator("#profile-result")).to_have_attribute("data-runs", "2")


@pytest.mark.browser
def test_the_dashboard_draws_the_minutes_recorded_and_asks_the_workers(
    page, live_server, store, slow_log, settings
):
    settings.ADMIN_WORKERS_TIMEOUT = 0.5
    save_session(store, "c1", turns=30)
    for _ in range(5):
        store.load("c1", window=20)
    # Loads of other processes, 10 and 30 minutes ago, counted by the log's own histograms.
    now = time.time()
    for _ in range(3):
        slow_log.histograms.add(LOAD, 0.002, now - 600)
    slow_log.histograms.add(LOAD, 0.0005, now - 1800)
    assert slow_log.flush()
    recorded = {str(m.minute): m.calls for m in slow_calls.load_latency() if m.calls}
    assert len(recorded) >= 3  # 4 when the minute turned during the loads
    log_in(page, live_server)

    page.locator("#sessions-dashboard-link a", has_text="Size dashboard").click()
    expect(page.locator("h1")).to_have_text("Session sizes")
    p50 = page.locator("#latency svg g.minute.p50")
    expect(p50).to_have_count(len(recorded))
    minutes = p50.evaluate_all("gs => gs.map(g => [g.dataset.minute, +g.dataset.calls])")
    assert dict(minutes) == recorded
    assert [m for m, _ in minutes] == sorted(recorded)  # oldest first, left to right
    boxes = [p50.nth(i).locator("rect").bounding_box() for i in range(len(recorded))]
    assert all(box["width"] > 0 and box["height"] > 0 for box in boxes)
    assert [box["x"] for box in boxes] == sorted(box["x"] for box in boxes)
    assert boxes[1]["height"] > boxes[0]["height"]  # 2 ms 10 minutes ago, 0.5 ms at 30
    expect(page.locator("#latency svg g.minute.p99")).to_have_count(len(recorded))

    # The workers panel, in its frame: none answers here, said once its timeout has passed.
    panel = page.frame_locator("#workers iframe")
    expect(panel.locator("#no-worker")).to_contain_text("No worker answers (waited 0.5 s)")
    expect(panel.locator("#queued")).to_have_text("0 tasks waiting")

    # And the slow calls behind the chart, one click away.
    page.click("#slow-calls-link")
    expect(page.locator("h1")).to_have_text("Slow calls")
    assert (LOAD, "c1") in rows(page)


@pytest.mark.browser
def test_the_page_reads_vietnamese_and_keeps_its_filters(page, live_server, store, slow_log):
    save_session(store, "vi-1", turns=3)
    store.load("vi-1", window=2)
    store.load("vi-1", window=None)
    assert slow_log.flush()
    log_in(page, live_server)
    filtered = f"{live_server.url}{url('slow_calls')}?call={LOAD}&conversation_id=vi-1"
    page.goto(filtered)
    english = page.content()

    page.select_option("#language-select", "vi")
    page.click("#language-submit")
    expect(page.locator("html")).to_have_attribute("lang", "vi")
    expect(page.locator("h1")).to_have_text("Lệnh gọi chậm")
    assert page.url == filtered  # back on the page, filtered as it was
    expect(page.locator("#id_call")).to_have_value(LOAD)
    assert rows(page) == [(LOAD, "vi-1"), (LOAD, "vi-1")]
    expect(page.locator("#slow-calls tr.slow-call").first.locator("td.field-window")).to_have_text(
        "mọi lượt"
    )
    same = sorted(texts(english) & texts(page.content()))
    assert same == [], same
    assert "Every store call that took 0 ms or more" in english


@pytest.mark.browser
def test_ids_and_call_names_holding_markup_are_shown_as_text(page, live_server, store, slow_log):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    save_session(store, HOSTILE_ID, turns=3)
    store.load(HOSTILE_ID, window=2)
    # Another writer's entry, through the log's own writer: any call name, error and phase.
    slow_log(
        CallRecord(
            call=HOSTILE_CALL,
            conversation_id=HOSTILE_ID,
            seconds=0.25,
            error="<b>Boom</b>",
            phases=(("<i>redis</i>", 0.2),),
        )
    )
    assert slow_log.flush()
    log_in(page, live_server)
    page.goto(live_server.url + url("slow_calls"))

    assert rows(page) == [(HOSTILE_CALL, HOSTILE_ID), (LOAD, HOSTILE_ID), (SAVE, HOSTILE_ID)]
    newest = page.locator("#slow-calls tr.slow-call").first
    expect(newest.locator("td.field-error")).to_have_text("<b>Boom</b>")
    expect(newest.locator("td.field-phases")).to_have_text("<i>redis</i> 200 ms")
    expect(page.locator("#slow-calls img, #slow-calls b, #slow-calls i")).to_have_count(0)

    # Filtered by that id through the form; the field shows it back as typed.
    page.fill("#id_conversation_id", HOSTILE_ID)
    page.click("#slow-calls-filter input[type=submit]")
    expect(page.locator("#slow-calls caption")).to_have_text("3 slow calls, newest first")
    expect(page.locator("#id_conversation_id")).to_have_value(HOSTILE_ID)

    # Its links open its pages.
    newest.locator("a.session-link").click()
    expect(page.locator("h1")).to_have_text(HOSTILE_ID)
    page.go_back()
    newest.locator("a.profile-link").click()
    assert page.url == live_server.url + url("profile", HOSTILE_ID)

    assert page.evaluate("window.pwned") is None
    assert dialogs == []


@pytest.mark.browser
def test_a_full_page_of_odd_entries_stays_inside_the_page(page, live_server, store):
    """Another writer's entries: ids, errors and process names far wider than the page, and
    numbers no call could have; and as many rows as the page shows, in a box of its own."""
    pipe = store.client.pipeline(transaction=False)
    for i in range(slow_calls.SHOWN):
        fields = {"call": LOAD, "cid": f"c-{i}", "ms": "1.5", "at": f"{time.time():.6f}"}
        pipe.xadd(store.keys.slow_log, fields)
    wide = {"call": LOAD, "cid": "w" * 400, "error": "E" * 400, "process": "p" * 400}
    pipe.xadd(store.keys.slow_log, {**wide, "ms": "1e300", "at": "1e30", "name": "n" * 400})
    pipe.xadd(store.keys.slow_log, {"call": LOAD, "cid": "odd", "ms": "nan", "at": "-inf"})
    pipe.execute()
    log_in(page, live_server)
    page.goto(live_server.url + url("slow_calls"))

    expect(page.locator("#slow-calls caption")).to_have_text("200 slow calls, newest first")
    odd, wide_row = page.locator("#slow-calls tr.slow-call").all()[:2]
    expect(odd.locator("td.field-took")).to_have_text("—")
    expect(odd.locator("td.field-at")).to_have_text("")
    expect(wide_row.locator("td.field-at")).to_have_text("")
    expect(wide_row.locator("td.field-took")).to_have_text("1e+297 s")
    # Nothing wider than the window; the rows scroll in their box, under the filters.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"]
    box = page.locator("#slow-calls-box").evaluate(
        "box => [box.clientHeight, box.scrollHeight, box.scrollWidth, box.clientWidth]"
    )
    assert box[0] <= 520 < box[1]
    assert box[2] <= box[3]
    # And no header broken inside a word.
    for name in ("When", "Call", "Conversation", "Phases", "Process"):
        header = page.locator("#slow-calls thead th", has_text=name)
        assert header.evaluate(LINES) == 1, name
