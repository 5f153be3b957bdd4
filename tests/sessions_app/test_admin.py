"""The sessions admin through Django's test client: every page, who may do what, what each action
changes in Redis and the archive, undecodable sessions, the load profile, the census.

Against the tests' real Redis database and the test database.
"""

import json
from urllib.parse import urlencode

import pytest
from django.contrib import admin
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.template.defaultfilters import filesizeformat
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from convstore.keys import DOC, STATE_PREFIX
from sessions_app import census, profiling, seeding, tasks
from sessions_app.models import ArchivedSession, ArchivedTurn
from sessions_app.services import CompactionPolicy
from sessions_app.store import ConversationStore
from tests.sessions_app.admin_pages import BIG, url
from tests.sessions_app.factories import save_session

pytestmark = pytest.mark.django_db

POLICY = CompactionPolicy(max_bytes=10_000_000, max_turns=100, keep_turns=20)


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


def archived_seqs(cid):
    return list(ArchivedTurn.objects.filter(conversation_id=cid).values_list("seq", flat=True))


def last_log():
    return LogEntry.objects.order_by("-id").first()


def page_urls():
    return [
        reverse("admin:index"),
        url("dashboard"),
        url("changelist"),
        url("changelist") + "?sort=turns&order=asc",
        url("changelist") + "?sort=seen&oversized=1",
        url("changelist") + "?q=small-0",
        url("changelist") + "?p=2",
        url("change", BIG),
        url("profile", BIG),
        url("trim", BIG),
        url("compact", BIG),
        url("delete", BIG),
        url("history", BIG),
        url("compact_now"),
        reverse("admin:sessions_app_archivedturn_changelist"),
        reverse("admin:sessions_app_archivedsession_changelist"),
    ]


# --- who may see and do what --------------------------------------------------------------


@pytest.mark.usefixtures("sessions")
def test_every_page_renders_for_a_superuser(admin_client):
    for address in page_urls():
        response = admin_client.get(address)
        assert response.status_code == 200, address


@pytest.mark.usefixtures("sessions")
def test_the_admin_index_links_to_the_dashboard(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert url("dashboard") in page
    assert url("changelist") in page


@pytest.mark.usefixtures("sessions")
def test_anonymous_users_are_sent_to_the_login_page(client):
    for address in page_urls()[1:]:
        for method in (client.get, client.post):
            response = method(address)
            assert response.status_code == 302, address
            assert response["Location"].startswith(reverse("admin:login")), address


def action_posts():
    """{address: form} of every POST that changes a session."""
    return {
        url("trim", BIG): {"keep": 1, "pinned": 0},
        url("compact", BIG): {},
        url("delete", BIG): {"discard": "on"},
        url("compact_now"): {},
        url("bulk"): {"action": "delete", "_selected_action": [BIG], "confirm": "yes"},
        url("profile", BIG): {"runs": 1, "window": 1},
    }


@pytest.mark.usefixtures("sessions")
def test_staff_without_permissions_get_403_and_nothing_changes(client, staff, store):
    turns = store.client.llen(store.keys.turns(BIG))
    posts = action_posts()
    for address, data in posts.items():
        assert client.post(address, data).status_code == 403, address
    for address in page_urls()[1:13]:
        assert client.get(address).status_code == 403, address
    assert store.client.llen(store.keys.turns(BIG)) == turns
    assert not LogEntry.objects.exists()


@pytest.mark.usefixtures("sessions")
def test_view_only_staff_see_no_buttons_and_get_403_on_each_action(client, staff):
    grant(staff, "view_conversationsession")
    page = client.get(url("change", BIG)).content.decode()
    assert "Where the bytes are" in page
    for view in ("trim", "compact", "delete"):
        assert url(view, BIG) not in page
        assert client.get(url(view, BIG)).status_code == 403
        assert client.post(url(view, BIG), {"keep": 1, "pinned": 0}).status_code == 403
    dashboard = client.get(url("dashboard")).content.decode()
    assert url("compact_now") not in dashboard
    assert client.post(url("compact_now")).status_code == 403
    assert 'name="action"' not in client.get(url("changelist")).content.decode()
    assert (
        client.post(url("bulk"), {"action": "trim", "_selected_action": [BIG]}).status_code == 403
    )


@pytest.mark.usefixtures("sessions")
def test_staff_with_the_trim_permission_see_only_that_button(client, staff):
    grant(staff, "view_conversationsession", "trim_conversationsession")
    page = client.get(url("change", BIG)).content.decode()
    assert url("trim", BIG) in page
    assert url("compact", BIG) not in page
    assert url("delete", BIG) not in page


# --- pages ------------------------------------------------------------------------------------


def test_the_dashboard_shows_sizes_the_largest_bots_and_the_census(admin_client, sessions):
    response = admin_client.get(url("dashboard"))
    data = response.context["data"]
    assert data.sessions == 13
    assert data.largest[0].conversation_id == BIG
    assert data.largest[0].turns == 300
    assert sum(count for _, _, count in data.histogram) == 13
    assert data.census.oversized == 1  # 300 turns > 100
    assert {bot.bot_id: bot.sessions for bot in data.census.bots} == {
        "bot-big": 1,
        "bot-a": 6,
        "bot-b": 6,
    }
    assert data.census.total_bytes == sum(
        int(s) for _, s in sessions.client.zrange(sessions.keys.index_bytes, 0, -1, withscores=True)
    )
    page = response.content.decode()
    assert page.count('class="band"') == len(data.histogram)
    assert "Count sessions for the admin" in page  # the beat schedule of the census


def test_the_dashboard_shows_the_scheduled_jobs_last_runs(admin_client):
    now = timezone.now()
    TaskResult.objects.create(
        task_id="t1",
        task_name="sessions_app.tasks.compact_oversized_sessions",
        status="SUCCESS",
        result=json.dumps(
            {"scanned": 240, "compacted": 20, "turns_archived": 14000, "seconds": 3.5}
        ),
        date_done=now,
    )
    TaskResult.objects.create(
        task_id="t2",
        task_name="sessions_app.tasks.compact_oversized_sessions",
        status="FAILURE",
        result=json.dumps({"exc_type": "StoreUnavailable", "exc_message": "Redis is down"}),
        date_done=now - timezone.timedelta(minutes=15),
    )
    page = admin_client.get(url("dashboard")).content.decode()
    assert "Compact oversized sessions" in page
    assert "scanned 240, compacted 20, turns archived 14000" in page
    assert "3.50 s" in page
    assert "StoreUnavailable: Redis is down" in page


def test_compact_now_enqueues_the_task_and_never_runs_it_here(admin_client, sessions, monkeypatch):
    queued = []

    class Result:
        id = "queued-1"

    monkeypatch.setattr(
        tasks.compact_oversized_sessions, "delay", lambda: queued.append(1) or Result
    )
    assert admin_client.get(url("compact_now")).status_code == 200  # the confirm page
    response = admin_client.post(url("compact_now"), follow=True)
    assert queued == [1]
    assert "Compaction queued (task queued-1)" in response.content.decode()
    assert sessions.client.llen(sessions.keys.turns(BIG)) == 300


def test_the_list_sorts_filters_pages_and_searches_in_redis(admin_client, sessions):
    def ids(query=""):
        rows = admin_client.get(url("changelist") + query).context["page"].rows
        return [row.conversation_id for row in rows]

    assert ids()[0] == BIG
    assert ids("?sort=turns&order=asc")[:2] == ["small-00", "small-01"]
    assert ids("?sort=turns")[:2] == [BIG, "small-11"]
    assert ids("?oversized=1") == [BIG]
    digest = sessions.client.hget(sessions.keys.state("small-01"), "cfg").decode()
    assert sorted(ids(f"?bot={digest}")) == [f"small-{n:02d}" for n in range(1, 12, 2)]
    assert ids("?q=small-1") == ["small-11", "small-10"]  # prefix, largest first
    assert ids("?q=small-03") == ["small-03"]  # exact
    assert ids("?q=nothing") == []
    sessions.client.hset(sessions.keys.state("small-00"), "bytes", 10**12)  # now the largest
    sessions.client.zadd(sessions.keys.index_bytes, {"small-00": 10**12})
    assert ids()[0] == "small-00"


def test_a_deep_page_of_the_list(admin_client, store):
    for n in range(120):
        save_session(store, f"s-{n:03d}", turns=1 + n % 7)
    response = admin_client.get(url("changelist") + "?p=3&sort=size&order=asc")
    page = response.context["page"]
    assert (page.page, page.pages, page.total, len(page.rows)) == (3, 3, 120, 20)
    sizes = [row.bytes for row in page.rows]
    assert sizes == sorted(sizes)


def test_the_detail_shows_where_the_bytes_are(admin_client, sessions):
    response = admin_client.get(url("change", BIG))
    parts = response.context["detail"].parts
    assert parts.turns == 300
    assert parts.history > 10 * parts.state_stored
    assert parts.history + parts.state_stored == parts.bytes
    assert dict(parts.state_keys).keys() == {"conversation_id", "bot_id", "user_id", "record"}
    assert dict(parts.record_keys).keys() == {"LOOP_COUNT", "HISTORY_QUESTION"}
    assert parts.bot_config == sessions.client.strlen(
        sessions.keys.bot_config(parts.bot_config_digest)
    )
    assert [turn["seq"] for turn in parts.last_turns] == list(range(250, 300))
    page = response.content.decode()
    assert page.count('class="part"') == 2 + 4 + 2 + 1  # history, doc, 4 keys, 2 of record, cfg
    assert "&quot;step_0001&quot;: 2" in page or '"step_0001": 2' in page  # record as JSON
    assert "turn 299" in page


# --- actions -------------------------------------------------------------------------------


def test_trim_through_the_confirm_page_archives_the_head_and_logs(admin_client, sessions):
    confirm = admin_client.get(url("trim", BIG)).content.decode()
    assert 'name="keep"' in confirm
    assert 'name="pinned"' in confirm
    before = int(sessions.client.hget(sessions.keys.state(BIG), "bytes"))

    response = admin_client.post(url("trim", BIG), {"keep": 50, "pinned": 1}, follow=True)

    assert response.redirect_chain[-1][0] == url("change", BIG)
    assert sessions.client.llen(sessions.keys.turns(BIG)) == 51
    assert archived_seqs(BIG) == list(range(1, 250))
    after = int(sessions.client.hget(sessions.keys.state(BIG), "bytes"))
    entry = last_log()
    assert (entry.object_id, entry.action_flag, entry.user.username) == (BIG, CHANGE, "admin")
    assert "kept 51 turns, archived 249" in entry.change_message
    assert f"{filesizeformat(before)} → {filesizeformat(after)}" in entry.change_message
    assert entry.change_message[1:] in response.content.decode()  # the admin capitalizes it
    assert response.context["detail"].archived_turns == 249


def test_compact_archives_an_oversized_session_by_the_policy(admin_client, sessions):
    admin_client.post(url("compact", BIG))
    keep = CompactionPolicy.from_settings().keep_turns
    assert sessions.client.llen(sessions.keys.turns(BIG)) == keep
    assert len(archived_seqs(BIG)) == 300 - keep
    assert "trimmed" in last_log().change_message


def test_delete_archives_the_session_first(admin_client, sessions):
    response = admin_client.post(url("delete", BIG), follow=True)
    assert response.redirect_chain[-1][0] == url("changelist")
    assert not sessions.client.exists(sessions.keys.state(BIG), sessions.keys.turns(BIG))
    assert sessions.client.zscore(sessions.keys.index_bytes, BIG) is None
    assert len(archived_seqs(BIG)) == 300
    assert ArchivedSession.objects.get(conversation_id=BIG).state["bot_id"] == "bot-big"
    assert last_log().action_flag == DELETION
    assert admin_client.get(url("change", BIG)).status_code == 200  # the archive still knows it


def test_delete_with_discard_archives_nothing(admin_client, sessions):
    admin_client.post(url("delete", BIG), {"discard": "on"})
    assert not sessions.client.exists(sessions.keys.state(BIG))
    assert not ArchivedTurn.objects.exists()
    assert not ArchivedSession.objects.exists()
    missing = admin_client.get(url("change", BIG), follow=True)
    assert missing.redirect_chain == [(url("changelist"), 302)]
    assert f"No conversation {BIG} in Redis or the archive." in missing.content.decode()


def test_restore_from_the_archived_session_admin(admin_client, sessions):
    admin_client.post(url("delete", BIG))
    row = ArchivedSession.objects.get(conversation_id=BIG)
    changelist = reverse("admin:sessions_app_archivedsession_changelist")
    data = {"action": "restore_selected", "_selected_action": [row.pk]}

    confirm = admin_client.post(changelist, data)
    assert confirm.status_code == 200
    assert b"restore-form" in confirm.content
    admin_client.post(changelist, {**data, "post": "yes"})

    keep = CompactionPolicy.from_settings().keep_turns
    assert sessions.client.llen(sessions.keys.turns(BIG)) == keep
    assert not ArchivedSession.objects.exists()
    assert "restored" in last_log().change_message
    assert sessions.load(BIG, window=None)["_turns"] == 300


def test_bulk_trim_from_the_list(admin_client, sessions):
    data = {"action": "trim", "_selected_action": ["small-10", "small-11"]}
    confirm = admin_client.post(url("bulk"), data).content.decode()
    assert "small-10" in confirm
    assert 'name="keep"' in confirm

    admin_client.post(url("bulk"), {**data, "confirm": "yes", "keep": 3, "pinned": 0})

    for cid, turns in (("small-10", 15), ("small-11", 16)):
        assert sessions.client.llen(sessions.keys.turns(cid)) == 3
        assert len(archived_seqs(cid)) == turns - 3
    assert LogEntry.objects.filter(action_flag=CHANGE).count() == 2


def test_an_action_re_counts_the_session_in_the_census(admin_client, sessions):
    assert admin_client.get(url("changelist") + "?oversized=1").context["page"].total == 1
    admin_client.post(url("trim", BIG), {"keep": 10, "pinned": 0})
    assert admin_client.get(url("changelist") + "?oversized=1").context["page"].total == 0
    first = admin_client.get(url("changelist") + "?sort=turns").context["page"].rows[0]
    assert first.conversation_id == "small-11"


# --- undecodable sessions -----------------------------------------------------------------


@pytest.fixture
def broken(sessions):
    client, keys = sessions.client, sessions.keys
    fields = client.hkeys(keys.state("small-00"))  # the one doc, or a field per state key
    field = DOC.encode() if DOC.encode() in fields else STATE_PREFIX.encode() + b"record"
    client.hset(keys.state("small-00"), field, b"{not json")
    client.delete(keys.state("small-01"))
    client.set(keys.state("small-01"), b"a string where a hash belongs")  # wrong type
    return sessions


def test_undecodable_sessions_show_in_the_list_with_key_and_size(admin_client, broken):
    response = admin_client.get(url("changelist") + "?q=small-0")
    rows = {row.conversation_id: row for row in response.context["page"].rows}
    assert rows["small-00"].layout == "undecodable"
    assert rows["small-00"].key == broken.keys.state("small-00")
    raw = broken.client.hgetall(broken.keys.state("small-00"))
    assert rows["small-00"].bytes == sum(map(len, raw.values()))
    assert rows["small-01"].layout == "undecodable"
    assert "holds a string" in rows["small-01"].problem
    assert rows["small-01"].bytes > 0
    page = response.content.decode()
    assert page.count("undecodable") >= 2
    assert broken.keys.state("small-01") in page


def test_undecodable_sessions_pages_render_and_nothing_is_deleted(admin_client, broken):
    for cid in ("small-00", "small-01"):
        for address in (url("change", cid), url("dashboard"), url("changelist")):
            assert admin_client.get(address).status_code == 200
        page = admin_client.get(url("change", cid)).content.decode()
        assert 'id="problem"' in page
        for view, data in (("delete", {"discard": "on"}), ("trim", {"keep": 1, "pinned": 0})):
            response = admin_client.post(url(view, cid), data, follow=True)
            assert response.status_code == 200
            assert "error" in response.content.decode()
        profile = admin_client.post(url("profile", cid), {"runs": 2, "window": 2})
        assert profile.status_code == 200
        assert profile.context["error"]
    assert b"{not json" in broken.client.hvals(broken.keys.state("small-00"))
    assert broken.client.type(broken.keys.state("small-01")) == b"string"
    assert "holds a string" in admin_client.get(url("change", "small-01")).content.decode()


# --- the load profile -----------------------------------------------------------------------


def test_the_profile_times_real_loads_and_deletes_its_scratch_key(
    admin_client, sessions, monkeypatch
):
    loads = []
    real_load = ConversationStore.load

    def counting_load(self, cid, window=20):
        loads.append((cid, window))
        return real_load(self, cid, window)

    monkeypatch.setattr(ConversationStore, "load", counting_load)
    response = admin_client.post(url("profile", BIG), {"runs": 7, "window": 30})

    result = response.context["result"]
    assert loads == [(BIG, 30)] * 8  # one untimed, to warm the bot_config cache, then 7
    phases = dict(result.phases)
    assert list(phases) == ["redis", "decode", "assemble", profiling.UNATTRIBUTED]
    assert all(timing.median > 0 for timing in phases.values())
    # The phases and the unattributed rest tile each load.
    assert sum(t.median for t in phases.values()) == pytest.approx(result.load.median, rel=0.5)
    assert result.legacy_json.median > 0
    assert result.legacy_orjson.median > 0
    assert result.blob_bytes > sessions.client.zscore(sessions.keys.index_bytes, BIG) * 0.5
    assert not list(sessions.client.scan_iter(match=sessions.keys.scratch("*")))
    page = response.content.decode()
    assert 'id="waterfall"' in page
    assert "json.loads" in page
    assert result.scratch_key in page


def test_the_profile_caps_the_runs_by_the_session_size(sessions, monkeypatch):
    monkeypatch.setattr(profiling, "BYTE_BUDGET", 500_000)
    result = profiling.profile_load(BIG, runs=50, window=5)
    size = sessions.client.zscore(sessions.keys.index_bytes, BIG)
    assert result.runs == max(1, int(500_000 // max(size, result.blob_bytes))) < 50
    assert result.capped


def test_the_profile_refuses_a_session_too_large(sessions, monkeypatch):
    monkeypatch.setattr(profiling, "MAX_BYTES", 1000)
    with pytest.raises(profiling.ProfileRefused):
        profiling.profile_load(BIG)


def test_a_legacy_blob_is_profiled_and_shown(admin_client, store):
    seeding.save_legacy(
        store, [{"conversation_id": "old", "bot_id": "b", "history": [{"r": 1}] * 30}]
    )
    detail = admin_client.get(url("change", "old")).context["detail"]
    assert detail.parts.layout == "legacy"
    assert detail.parts.turns == 30
    result = admin_client.post(url("profile", "old"), {"runs": 3, "window": 5}).context["result"]
    assert result.runs == 3
    assert store.client.exists(store.keys.legacy("old"))  # profiling writes nothing back


# --- the census ---------------------------------------------------------------------------------


def test_the_census_is_swapped_in_whole_and_forgets_bots_that_left(sessions):
    first = census.build(sessions, POLICY)
    assert first.sessions == 13
    for n in range(0, 12, 2):
        sessions.delete(f"small-{n:02d}")
    second = census.build(sessions, POLICY)
    assert {bot.bot_id for bot in second.bots} == {"bot-big", "bot-a"}
    gone = next(bot for bot in first.bots if bot.bot_id == "bot-b")
    assert not sessions.client.exists(sessions.keys.census_bot(gone.digest))
    assert not list(sessions.client.scan_iter(match=sessions.keys.census("build:*")))


def test_a_stale_census_of_a_large_store_is_left_to_the_beat_job(sessions):
    old = census.build(sessions, POLICY)
    later = old.built_at + census.MAX_AGE + 1
    assert census.current(sessions, POLICY, now=later, inline_limit=5) == old
    assert census.current(sessions, POLICY, now=later).built_at > old.built_at


# --- language -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("sessions")
def test_the_dashboard_speaks_vietnamese(admin_client):
    page = admin_client.get(url("dashboard"), headers={"accept-language": "vi"}).content.decode()
    assert "Kích thước phiên hội thoại" in page
    assert "Tác vụ định kỳ" in page
    assert "Session sizes" not in page
    english = admin_client.get(url("dashboard"), headers={"accept-language": "en"})
    assert "Session sizes" in english.content.decode()


# --- what a conversation id may hold, and who may post ------------------------------------

XSS = "<img src=x onerror=alert(1)>"  # ids may hold anything but braces
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def assert_escaped(page, address):
    assert ESCAPED in page, address
    assert XSS not in page, address


def test_a_conversation_id_is_escaped_on_every_page_that_shows_it(admin_client, store):
    save_session(store, XSS, turns=40)
    searched = url("changelist") + "?" + urlencode({"q": XSS})
    views = ("change", "profile", "trim", "compact", "delete", "history")
    for address in (url("dashboard"), url("changelist"), searched, *(url(v, XSS) for v in views)):
        response = admin_client.get(address)
        assert response.status_code == 200, address
        assert_escaped(response.content.decode(), address)
    bulk = admin_client.post(url("bulk"), {"action": "trim", "_selected_action": [XSS]})
    assert_escaped(bulk.content.decode(), "bulk confirm")
    done = admin_client.post(url("trim", XSS), {"keep": 10, "pinned": 0}, follow=True)
    assert f"{ESCAPED}: trimmed; kept 10 turns, archived 30" in done.content.decode()
    assert_escaped(done.content.decode(), "the message after a trim")


def test_each_confirm_page_names_the_conversation_in_its_sentence(admin_client, store):
    save_session(store, XSS, turns=3)
    for view in ("trim", "compact", "delete"):
        page = admin_client.get(url(view, XSS)).content.decode()
        assert f"Conversation <strong>{ESCAPED}</strong>." in page, view
        crumb = f'<a href="{url("change", XSS)}">{ESCAPED}</a>'
        assert crumb in page, view


def test_the_restore_confirm_page_escapes_the_conversation_id(admin_client, store):
    save_session(store, XSS, turns=3)
    admin_client.post(url("delete", XSS))
    row = ArchivedSession.objects.get(conversation_id=XSS)
    changelist = reverse("admin:sessions_app_archivedsession_changelist")
    for page in (
        admin_client.get(changelist),
        admin_client.post(changelist, {"action": "restore_selected", "_selected_action": [row.pk]}),
    ):
        assert page.status_code == 200
        assert_escaped(page.content.decode(), "archived sessions")
    assert b"restore-form" in page.content


@pytest.fixture
def csrf_client():
    """A superuser's client that checks CSRF tokens, as a browser's requests are checked."""
    user = get_user_model().objects.create_superuser("csrf", password="pw")
    checked = Client(enforce_csrf_checks=True)
    checked.force_login(user)
    return checked


@pytest.mark.usefixtures("sessions")
def test_every_action_refuses_a_post_without_a_csrf_token(csrf_client, store):
    redis_before = {
        key: store.client.lrange(key, 0, -1) if key.endswith("turns") else store.client.hgetall(key)
        for key in (store.keys.state(BIG), store.keys.turns(BIG))
    }
    posts = action_posts()
    for address, data in posts.items():
        response = csrf_client.post(address, data)
        assert response.status_code == 403, address
        assert b"CSRF verification failed" in response.content, address
    assert {
        key: store.client.lrange(key, 0, -1) if key.endswith("turns") else store.client.hgetall(key)
        for key in redis_before
    } == redis_before
    assert not ArchivedTurn.objects.exists()
    assert not ArchivedSession.objects.exists()
    assert not LogEntry.objects.exists()
    # The same client with the page's token is let through: the refusal was the token's.
    token = csrf_client.get(url("trim", BIG)).context["csrf_token"]
    response = csrf_client.post(
        url("trim", BIG), {"keep": 1, "pinned": 0, "csrfmiddlewaretoken": str(token)}
    )
    assert response.status_code == 302
    assert store.client.llen(store.keys.turns(BIG)) == 1


# --- the archive is read-only; restoring needs its permission -----------------------------


@pytest.fixture
def archived(admin_client, sessions):
    """BIG archived whole (by the admin's Delete), so both archive tables have rows."""
    admin_client.post(url("delete", BIG))
    assert ArchivedTurn.objects.filter(conversation_id=BIG).count() == 300
    return ArchivedSession.objects.get(conversation_id=BIG)


@pytest.mark.parametrize("model", [ArchivedTurn, ArchivedSession])
def test_nobody_deletes_archive_rows_in_the_admin_not_even_a_superuser(
    admin_client, archived, model, rf, admin_user
):
    request = rf.get("/")
    request.user = admin_user
    model_admin = admin.site._registry[model]
    assert not model_admin.has_delete_permission(request)
    assert "delete_selected" not in model_admin.get_actions(request)
    name = model._meta.model_name
    changelist = reverse(f"admin:sessions_app_{name}_changelist")
    row = model.objects.filter(conversation_id=BIG).first()
    count = model.objects.count()

    assert b'value="delete_selected"' not in admin_client.get(changelist).content
    delete_page = reverse(f"admin:sessions_app_{name}_delete", args=[row.pk])
    assert admin_client.get(delete_page).status_code == 403
    assert admin_client.post(delete_page, {"post": "yes"}).status_code == 403
    admin_client.post(
        changelist, {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
    )

    assert model.objects.count() == count


def test_restore_needs_the_restore_permission(client, staff, archived, store):
    grant(staff, "view_archivedsession", "view_archivedturn")
    changelist = reverse("admin:sessions_app_archivedsession_changelist")
    page = client.get(changelist)
    assert page.status_code == 200
    assert b"restore_selected" not in page.content

    data = {"action": "restore_selected", "_selected_action": [archived.pk], "post": "yes"}
    client.post(changelist, data)

    assert ArchivedSession.objects.filter(pk=archived.pk).exists()
    assert not store.client.exists(store.keys.state(BIG), store.keys.turns(BIG))
    # With the permission, the same post restores it.
    grant(staff, "restore_archivedsession")
    client.post(changelist, data)
    assert not ArchivedSession.objects.filter(pk=archived.pk).exists()
    assert store.client.exists(store.keys.state(BIG))
