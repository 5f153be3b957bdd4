"""The phoneme cache admin in a real Chromium: totals and hits on the list, the evict action."""

import os

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect, sync_playwright

from phonemes.models import PhonemeCacheCounter
from tests.phonemes.test_services import make_entry

# Playwright's sync API runs an event loop in this thread; the ORM calls here are still sync.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def page(live_server):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(10_000)
        yield page
        browser.close()


@pytest.mark.browser
def test_operator_sees_hits_and_evicts_selected_entries(page, live_server):
    get_user_model().objects.create_superuser("operator", "op@example.org", "pw-operator")
    make_entry("the cat sat", days_ago=1, size=400, hits=7)
    make_entry("a dog barked", days_ago=2, size=300, hits=5)
    make_entry("stale words", days_ago=9, size=300, hits=0)
    for name, value in [("tier1_hits", 60), ("tier2_hits", 15), ("misses", 25)]:
        PhonemeCacheCounter.objects.create(name=name, value=value)

    page.goto(f"{live_server.url}/admin/login/?next=/admin/phonemes/phonemecacheentry/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "pw-operator")
    page.click("input[type=submit]")

    expect(page.locator("#summary-rows")).to_have_text("3")
    expect(page.locator("#summary-bytes")).to_have_text("1000\u00a0bytes")
    expect(page.locator("#summary-row-hits")).to_have_text("12")
    expect(page.locator("#summary-tier1-hits")).to_have_text("60")
    expect(page.locator("#summary-hit-rate")).to_contain_text("75 % of 100 lookups")
    cat_row = page.locator("#result_list tr", has_text="the cat sat")
    expect(cat_row.locator("td.field-hits")).to_have_text("7")

    for text in ["a dog barked", "stale words"]:
        page.locator("#result_list tr", has_text=text).locator("input.action-select").check()
    page.select_option("select[name=action]", "evict_selected")
    page.click("button[name=index]")

    expect(page.locator("ul.messagelist")).to_contain_text("Evicted 2 phoneme cache entries.")
    expect(page.locator("#summary-rows")).to_have_text("1")
    expect(page.locator("#result_list")).to_contain_text("the cat sat")
    expect(page.locator("#result_list")).not_to_contain_text("a dog barked")
    expect(page.locator("#result_list")).not_to_contain_text("stale words")
