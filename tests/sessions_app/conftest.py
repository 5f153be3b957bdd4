import pytest
from playwright.sync_api import sync_playwright

from tests.phonemes.test_admin_browser import CHROMIUM_ARGS

# The admin's fixtures.
from tests.sessions_app.admin_pages import sessions, slow_log, staff  # noqa: F401


@pytest.fixture
def page(live_server):
    """A page of a real Chromium (Debian's) on the live server, for the tests marked browser."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(15_000)
        yield page
        browser.close()
