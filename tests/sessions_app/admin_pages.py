"""What the admin's tests share: a conversation id that needs quoting, the admin's URLs, and the
sessions and the staff user they work on (fixtures, registered by conftest.py)."""

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.urls import reverse

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
