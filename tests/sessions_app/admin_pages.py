"""What the admin's tests share: a conversation id that needs quoting, the admin's URLs, the
sessions and the staff user they work on, the slow-call log (fixtures, registered by
conftest.py), and an operator logging in through the browser."""

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.urls import reverse

from convstore import disable_slow_log
from sessions_app import slow_calls
from tests.sessions_app.factories import save_session

BIG = "big/one 1_x"  # an id that needs quoting: "/", " " and "_"


def url(view, *args):
    name = f"admin:sessions_app_conversationsession_{view}"
    return reverse(name, args=[quote(a) for a in args])


@pytest.fixture
def sessions(store, settings):
    settings.ROBOTPERF_COMPACTION = {**settings.ROBOTPERF_COMPACTION, "MAX_TURNS": 100}
    save_session(store, BIG, turns=300, size=20, bot_id="bot-big")
    for n in range(12):
        save_session(store, f"small-{n:02d}", turns=5 + n, bot_id="bot-a" if n % 2 else "bot-b")
    return store


@pytest.fixture
def staff(client):
    """A staff user with no permission at all."""
    user = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(user)
    return user


@pytest.fixture
def slow_log(settings):
    """The log as every process enables it, logging every call (threshold 0)."""
    settings.SLOW_CALL_LOG = True
    settings.SLOW_CALL_THRESHOLD_MS = 0
    enabled = slow_calls.enable_from_settings()
    yield enabled
    disable_slow_log()


def log_in(page, live_server):
    """Log in through the login form as a new superuser, "operator"; on the admin index."""
    get_user_model().objects.create_superuser("operator", "op@example.org", "pw-operator")
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "pw-operator")
    page.click("input[type=submit]")
