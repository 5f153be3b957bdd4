"""The sessions admin as an operator reads it: figures that are true and say how old they are,
one format for sizes and times, and the fewer steps (restore from a page, select all, grouped
bot filter, pages with an ellipsis, search within the filters, the plan before compacting).

Through Django's test client, against the tests' real Redis database and the test database.
"""

import itertools
import json
import re

import orjson
import pytest
from django.contrib.auth.models import Permission
from django.template.defaultfilters import filesizeformat
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from sessions_app import census, seeding, tasks
from sessions_app.compaction import CompactionPolicy
from sessions_app.models import ArchivedSession, ArchivedTurn
from sessions_app.store import get_store
from tests.sessions_app.admin_pages import BIG, url
from tests.sessions_app.factories import save_session

pytestmark = pytest.mark.django_db


def text(response):
    return response.content.decode()


def legacy_blob(store, cid, turns):
    seeding.save_legacy(
        store,
        [{"conversation_id": cid, "bot_id": "old-bot", "history": [{"role": "user"}] * turns}],
    )


# --- numbers that are true ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_compact_now_re_counts_the_census_when_the_run_finishes(
    admin_client, sessions, worker, celery_queue
):
    policy = CompactionPolicy.from_settings()
    assert census.build(sessions, policy).oversized == 1

    queued = tasks.compact_oversized_sessions.apply_async(queue=celery_queue)
    # Queued and not finished: the dashboard says so, and reloads itself until it has.
    report = queued.get(timeout=30)
    assert report["compacted"] == 1

    counted = census.read(sessions)
    assert counted.oversized == 0
    assert not counted.stale
    page = admin_client.get(url("dashboard") + f"?task={queued.id}")
    assert page.context["data"].census.oversized == 0
    assert re.search(r'id="oversized">0<', text(page))
    assert 'data-state="SUCCESS"' in text(page)
    assert "compacted 1" in text(page)
    assert 'http-equiv="refresh"' not in text(page)


def test_a_queued_task_shows_its_state_until_it_finishes(admin_client, sessions):
    page = text(admin_client.get(url("dashboard") + "?task=not-run-yet"))
    assert 'data-state="PENDING"' in page
    assert 'http-equiv="refresh"' in page


def test_compact_now_goes_to_the_dashboard_following_its_task(admin_client, sessions, monkeypatch):
    class Queued:
        id = "queued-7"

    monkeypatch.setattr(tasks.compact_oversized_sessions, "delay", lambda: Queued)
    response = admin_client.post(url("compact_now"))
    assert response["Location"] == url("dashboard") + "?task=queued-7"


def test_the_census_says_how_old_it_is(admin_client, sessions):
    built = census.build(sessions, CompactionPolicy.from_settings())
    page = text(admin_client.get(url("dashboard")))
    assert "counted just now" in page
    assert "0 minutes" not in page
    summary = orjson.loads(sessions.client.get(sessions.keys.census("summary")))
    summary["built_at"] = built.built_at - 200  # younger than MAX_AGE: not recounted
    sessions.client.set(sessions.keys.census("summary"), orjson.dumps(summary))
    assert "counted 3\xa0minutes ago" in text(admin_client.get(url("dashboard")))


def test_compacting_a_legacy_blob_reports_the_blobs_size_before(admin_client, store):
    legacy_blob(store, "old-1", 400)
    blob = store.client.strlen(store.keys.legacy("old-1"))
    response = admin_client.post(url("compact", "old-1"), follow=True)
    message = str(next(iter(response.context["messages"])))
    assert message.startswith("old-1: migrated")
    before = message.split(", ")[-1].split(" → ")[0]
    assert before == filesizeformat(blob)


def test_a_legacy_blobs_ttl_is_the_same_in_the_list_and_on_its_page(admin_client, store):
    legacy_blob(store, "old-2", 3)
    store.client.expire(store.keys.legacy("old-2"), 3 * 24 * 3600)
    census.build(store, CompactionPolicy.from_settings())
    rows = admin_client.get(url("changelist") + "?legacy=1").context["page"].rows
    assert [(row.conversation_id, row.layout) for row in rows] == [("old-2", "legacy")]
    assert 3 * 24 * 3600 - 10 < rows[0].ttl <= 3 * 24 * 3600
    parts = admin_client.get(url("change", "old-2")).context["detail"].parts
    assert abs(parts.ttl - rows[0].ttl) < 5


@pytest.mark.parametrize("split_keys", [("record",), ()], ids=["split", "whole"])
def test_where_the_bytes_are_says_what_is_stored_and_what_is_json(
    admin_client, settings, split_keys
):
    settings.ROBOTPERF_STORE = {**settings.ROBOTPERF_STORE, "SPLIT_KEYS": split_keys}
    store = get_store()
    save_session(store, "big-state", turns=3)
    session = store.load("big-state", window=0)
    record = {"HISTORY_QUESTION": [f"question {n} " * 20 for n in range(300)], "TOOL_SCORE": 1}
    store.update_state("big-state", {"record": record}, expected_rev=session["_rev"])
    page = admin_client.get(url("change", "big-state"))
    bars = {bar.label: bar.note for bar in page.context["parts"].bars}
    parts = page.context["detail"].parts
    assert bars["record"].startswith("stored, compressed;")
    if split_keys:
        # Each key of a split record has a field, and a stored size, of its own.
        assert bars["record.HISTORY_QUESTION"].startswith("stored, compressed;")
        assert bars["record.TOOL_SCORE"] == "stored, as JSON"
        assert sum(dict(parts.record_keys).values()) == dict(parts.state_keys)["record"]
    else:
        assert bars["record.HISTORY_QUESTION"] == bars["record.TOOL_SCORE"] == "as JSON"


def test_after_a_restore_the_page_says_which_archived_turns_are_in_redis_too(
    admin_client, sessions
):
    admin_client.post(url("delete", BIG))
    admin_client.post(url("restore", BIG), {"confirm": "yes"})
    keep = CompactionPolicy.from_settings().keep_turns
    detail = admin_client.get(url("change", BIG)).context["detail"]
    assert (detail.archived_turns, detail.archived_in_redis) == (300, keep)
    assert f"({keep} of them also in Redis)" in text(admin_client.get(url("change", BIG)))


def test_archived_turns_of_another_incarnation_are_not_counted(admin_client, sessions):
    admin_client.post(url("delete", BIG))  # archived whole: 300 turns
    save_session(sessions, BIG, turns=4)  # the id lives again, as a new incarnation
    detail = admin_client.get(url("change", BIG)).context["detail"]
    assert ArchivedTurn.objects.filter(conversation_id=BIG).count() == 300
    assert (detail.archived_turns, detail.archived_in_redis) == (0, 0)


def test_job_rows_write_sizes_as_the_rest_of_the_admin(admin_client):
    TaskResult.objects.create(
        task_id="t1",
        task_name="sessions_app.tasks.compact_oversized_sessions",
        status="SUCCESS",
        result=json.dumps({"compacted": 3, "bytes_before": 5350515, "bytes_after": 81000}),
        date_done=timezone.now(),
    )
    page = text(admin_client.get(url("dashboard")))
    assert "5350515" not in page
    assert "before 5.1\xa0MB, after 79.1\xa0KB" in page


def test_turn_times_are_written_as_every_other_date(admin_client, store):
    store.save(
        {
            "conversation_id": "timed",
            "history": [
                {"role": "user", "content": "hi", "created_at": "2026-03-04T05:06:07+00:00"}
            ],
        }
    )
    page = text(admin_client.get(url("change", "timed")))
    assert "2026-03-04T05:06:07" not in page
    assert "03/04/2026" in page


def test_the_histogram_bins_follow_the_data_on_a_log_scale(admin_client, store):
    for n, turns in enumerate((1, 2, 5, 40, 300, 2000)):
        save_session(store, f"h-{n}", turns=turns)
    response = admin_client.get(url("dashboard"))
    bands = response.context["data"].histogram
    assert len(bands) <= 12
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bands))  # no gaps
    assert sum(count for _, _, count in bands) == 6
    widths = [high / low for low, high, _ in bands[1:-1]]
    assert max(widths) / min(widths) < 1.2  # equal on a log scale
    labels = [bar.label for bar in response.context["histogram"].bars]
    assert all(re.fullmatch(r"[\d.]+\xa0(bytes|KB|MB)", label) for label in labels), labels


def test_messages_keep_the_ids_case(admin_client, sessions):
    response = admin_client.post(
        url("trim", "small-03"), {"keep": 2, "pinned": 0, "confirm": "yes"}, follow=True
    )
    assert '<li class="success">small-03: trimmed' in text(response)


# --- fewer steps ----------------------------------------------------------------------------


def test_restore_from_a_deleted_sessions_page_in_one_click(admin_client, sessions):
    admin_client.post(url("delete", BIG))
    page = text(admin_client.get(url("change", BIG)))
    assert 'id="restore-button"' in page
    response = admin_client.post(url("restore", BIG), {"confirm": "yes"}, follow=True)
    assert response.redirect_chain[-1][0] == url("change", BIG)
    assert sessions.client.exists(sessions.keys.state(BIG))
    assert not ArchivedSession.objects.exists()
    assert f"{BIG}: restored" in text(response)


def test_restore_from_the_archived_sessions_page(admin_client, sessions):
    admin_client.post(url("delete", BIG))
    row = ArchivedSession.objects.get(conversation_id=BIG)
    page = admin_client.get(reverse("admin:sessions_app_archivedsession_change", args=[row.pk]))
    assert 'id="restore-button"' in text(page)
    assert f'value="{row.incarnation}"' in text(page)
    admin_client.post(url("restore", BIG), {"incarnation": row.incarnation, "confirm": "yes"})
    assert sessions.client.exists(sessions.keys.state(BIG))


def test_restore_from_a_page_needs_the_restore_permission(client, staff, sessions):
    superuser = Client()
    superuser.force_login(type(staff).objects.create_superuser("root", "r@example.org", "pw-root"))
    superuser.post(url("delete", BIG))
    staff.user_permissions.add(Permission.objects.get(codename="view_conversationsession"))
    assert 'id="restore-button"' not in text(client.get(url("change", BIG)))
    assert client.post(url("restore", BIG), {"confirm": "yes"}).status_code == 403
    assert not sessions.client.exists(sessions.keys.state(BIG))


def test_the_list_selects_all_and_skips_pages_with_an_ellipsis(admin_client, store):
    for n in range(400):
        save_session(store, f"s-{n:03d}", turns=1)
    page = text(admin_client.get(url("changelist") + "?p=5"))
    assert 'id="action-toggle"' in page
    paginator = page[page.index('id="paginator"') :]
    numbers = re.findall(r">(\d+|…)<", paginator)
    assert numbers == ["1", "…", "3", "4", "5", "6", "7", "8"]


def test_the_bot_filter_groups_bot_configs_by_bot_name(admin_client, store):
    save_session(store, "one", turns=1, bot_id="tutor")
    save_session(store, "two", turns=1, bot_id="tutor")
    save_session(store, "three", turns=1, bot_id="coach")
    two = store.load("two", window=0)
    config = {**two["bot_config"], "version": 2}
    store.update_state("two", {"bot_config": config}, expected_rev=two["_rev"])
    census.build(store, CompactionPolicy.from_settings())
    links = admin_client.get(url("changelist")).context["links"]
    grouped = {name: len(configs) for name, configs in links.bots}
    assert grouped == {"coach": 1, "tutor": 2}


def test_search_keeps_the_filters(admin_client, sessions):
    response = admin_client.get(url("changelist") + "?q=b&oversized=1")
    assert [row.conversation_id for row in response.context["page"].rows] == [BIG]
    assert [
        row.conversation_id
        for row in admin_client.get(url("changelist") + "?q=small&oversized=1").context["page"].rows
    ] == []
    assert '<input type="hidden" name="oversized" value="1">' in text(response)


def test_legacy_blobs_are_found_by_prefix_and_listed_from_the_dashboard(admin_client, sessions):
    legacy_blob(sessions, "legacy-a", 2)
    legacy_blob(sessions, "legacy-b", 2)
    census.build(sessions, CompactionPolicy.from_settings())
    found = admin_client.get(url("changelist") + "?q=legacy-").context["page"].rows
    assert sorted(row.conversation_id for row in found) == ["legacy-a", "legacy-b"]
    dashboard = text(admin_client.get(url("dashboard")))
    assert f'href="{url("changelist")}?legacy=1">2</a>' in dashboard
    listed = admin_client.get(url("changelist") + "?legacy=1").context["page"]
    assert sorted(row.conversation_id for row in listed.rows) == ["legacy-a", "legacy-b"]
    admin_client.post(url("compact", "legacy-a"))  # migrated: no longer listed as a blob
    listed = admin_client.get(url("changelist") + "?legacy=1").context["page"]
    assert [row.conversation_id for row in listed.rows] == ["legacy-b"]


def test_compact_confirm_pages_show_the_plan(admin_client, sessions):
    one = admin_client.get(url("compact", BIG))
    plan, keep = one.context["plan"], CompactionPolicy.from_settings().keep_turns
    assert (plan.compacted, plan.turns_archived) == (1, 300 - keep)
    assert f'id="plan-turns">{300 - keep}<' in text(one)
    now = admin_client.get(url("compact_now"))  # no census yet: every session looked at
    assert now.context["plan"].compacted == 1
    assert 'id="plan-scanned">13<' in text(now)
    census.build(sessions, CompactionPolicy.from_settings())
    now = admin_client.get(url("compact_now"))  # the census's oversized set only
    assert (now.context["plan"].scanned, now.context["plan"].compacted) == (1, 1)
    assert sessions.client.llen(sessions.keys.turns(BIG)) == 300  # a dry run


def test_trim_confirm_shows_the_turns_and_defaults_to_the_policys_pinned(
    admin_client, sessions, settings
):
    settings.ROBOTPERF_COMPACTION = {**settings.ROBOTPERF_COMPACTION, "PINNED": 1}
    page = admin_client.get(url("trim", BIG))
    assert page.context["form"]["pinned"].value() == 1
    assert "It holds 300 turns in Redis" in text(page)


def test_a_missing_session_is_a_message_on_the_list(admin_client, store):
    for view in ("change", "profile"):
        response = admin_client.get(url(view, "nobody"), follow=True)
        if view == "profile":
            response = admin_client.post(url(view, "nobody"), {"runs": 1}, follow=True)
        assert response.redirect_chain == [(url("changelist"), 302)]
        assert "No conversation nobody in Redis or the archive." in text(response)


def test_the_breadcrumb_names_each_level_once(admin_client, sessions):
    page = text(admin_client.get(url("change", BIG)))
    crumbs = page[page.index('class="breadcrumbs"') :].split("</div>")[0]
    names = re.findall(r">([^<>]+)</a>", crumbs)
    assert len(names) == len(set(names)), names


def test_every_admin_page_has_the_language_menu(admin_client, sessions):
    for name in (
        "admin:sessions_app_archivedturn_changelist",
        "admin:sessions_app_archivedsession_changelist",
        "admin:phonemes_phonemecacheentry_changelist",
        "admin:django_celery_beat_periodictask_changelist",
        "admin:django_celery_results_taskresult_changelist",
        "admin:index",
    ):
        assert 'id="language-form"' in text(admin_client.get(reverse(name))), name
