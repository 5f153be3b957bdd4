"""The admin when Redis is full: a private redis-server with a small maxmemory and noeviction,
filled until it refuses writes. The dashboard, the list (filters too) and the detail page render,
with a banner that says so and how much memory is used of how much; the pages' own writes (the
census, a filter's scratch key) are refused and they do without.
"""

import pytest
import redis
from django.contrib.admin.utils import quote
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from sessions_app import census, selectors
from sessions_app.compaction import CompactionPolicy
from sessions_app.store import get_store
from tests.sessions_app.factories import save_session

pytestmark = pytest.mark.django_db

MAXMEMORY = 4 * 1024 * 1024


def url(view, *args):
    name = f"admin:sessions_app_conversationsession_{view}"
    return reverse(name, args=[quote(a) for a in args])


@pytest.fixture
def full_redis(settings, sessions_redis):
    """Sessions on a redis-server of this test's own, filled until it refuses writes."""
    server = sessions_redis("--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "noeviction")
    settings.ROBOTPERF_COMPACTION = {
        **settings.ROBOTPERF_COMPACTION,
        "MAX_TURNS": 20,
        "KEEP_TURNS": 5,
    }
    store = get_store()
    save_session(store, "long", turns=30, bot_id="bot-a")
    save_session(store, "short", turns=3, bot_id="bot-a")
    census.build(store, CompactionPolicy.from_settings())
    store.client.set(store.keys.census("stale"), 1)  # so a page view tries to count again
    client = server.client()
    for size in (10_000, 100, 1):  # until not even a small write fits
        try:
            for n in range(MAXMEMORY // size):
                client.set(f"filler:{size}:{n}", b"x" * size)
        except redis.exceptions.OutOfMemoryError:
            pass
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("one-more", b"x")
    client.close()
    return store


def test_the_pages_render_when_redis_is_full_with_a_banner(full_redis, admin_client):
    store = full_redis
    digest = store.client.hget(store.keys.state("long"), "cfg").decode()
    pages = {
        "dashboard": url("dashboard"),
        "list": url("changelist"),
        "by turns": url("changelist") + "?sort=turns",
        "oversized": url("changelist") + "?oversized=1",
        "one bot": url("changelist") + f"?bot={digest}",
        "search": url("changelist") + "?q=lo",
        "detail": url("change", "long"),
    }
    memory = selectors.redis_memory()
    assert memory.full
    assert memory.maxmemory == MAXMEMORY
    for name, address in pages.items():
        response = admin_client.get(address)
        assert response.status_code == 200, name
        page = response.content.decode()
        assert 'id="redis-full"' in page, name
        assert f"of {filesizeformat(MAXMEMORY)} (maxmemory, policy noeviction)" in page, name
        assert "long" in page, name
    # The filters' scratch key was refused: their rows came from a read instead.
    oversized = admin_client.get(pages["oversized"]).context["page"]
    assert [row.conversation_id for row in oversized.rows] == ["long"]
    one_bot = admin_client.get(pages["one bot"]).context["page"]
    assert {row.conversation_id for row in one_bot.rows} == {"long", "short"}
    # The count the page view tried was refused; the census it had is shown, nothing is left.
    assert admin_client.get(pages["dashboard"]).context["data"].census.sessions == 2
    assert not list(store.client.scan_iter(match=store.keys.census("build:*")))
    assert not list(store.client.scan_iter(match=store.keys.scratch("*")))


def test_the_banner_speaks_vietnamese(full_redis, admin_client):
    page = admin_client.get(url("dashboard"), headers={"accept-language": "vi"})
    assert "Redis đã đầy" in page.content.decode()
    assert "Redis is full" not in page.content.decode()


def test_no_banner_while_redis_has_room(admin_client, store):
    save_session(store, "long", turns=30)
    for address in (url("dashboard"), url("changelist"), url("change", "long")):
        page = admin_client.get(address).content.decode()
        assert 'id="redis-full"' not in page, address
