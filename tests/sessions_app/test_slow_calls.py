"""The slow-call log on the Django side: enabled from settings in every process, the admin's
"Slow calls" page (newest first, filtered, linked to each session and its profile), and the
dashboard's latency of the last hour drawn from the buckets the processes wrote."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from sessions_app import slow_calls
from tests.sessions_app.admin_pages import BIG, url
from tests.sessions_app.factories import save_session
from tests.sessions_app.test_admin import grant

pytestmark = pytest.mark.django_db
LOAD = "robot-v2.load-conversation"
ROOT = Path(__file__).resolve().parents[2]


def rows(page):
    return re.findall(
        r'<td class="field-call">([^<]*)</td>\s*<th scope="row" class="field-id">'
        r'(?:<a class="session-link" href="[^"]*">([^<]*)</a>)?',
        page,
    )


def test_every_process_enables_it_from_settings_when_its_apps_are_ready(redis_client, tmp_path):
    """A process of the project (here a script that sets Django up, as the web server, the
    Celery worker and manage.py do) logs its calls with its own name and pid."""
    script = (
        "import django; django.setup()\n"
        "from sessions_app.store import get_store\n"
        "get_store().save({'conversation_id': 'from-child', 'history': []})\n"
        "from convstore import disable_slow_log; disable_slow_log()\n"
        "import os; print(os.getpid())\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "robotperf.settings",
        "REDIS_URL": django_settings.CACHES["sessions"]["LOCATION"],
        "ROBOTPERF_VAR_DIR": str(tmp_path),
        "SLOW_CALL_THRESHOLD_MS": "0",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "convstore" / "src")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr

    (call,) = slow_calls.slow_calls()
    assert (call.call, call.conversation_id) == ("robot-v2.save-conversation", "from-child")
    assert call.process == f"{socket.gethostname()}:{done.stdout.strip()}"
    assert call.name == "-c"


def test_no_log_when_turned_off(settings):
    settings.SLOW_CALL_LOG = False
    assert slow_calls.enable_from_settings() is None


def test_a_threshold_no_run_could_use_is_a_check_error_and_no_log(settings):
    from sessions_app.checks import check_limits

    settings.SLOW_CALL_LOG = True
    settings.SLOW_CALL_THRESHOLD_MS = -5
    assert slow_calls.enable_from_settings() is None
    (error,) = [e for e in check_limits() if "SLOW_CALL" in e.msg]
    assert error.msg == "SLOW_CALL_THRESHOLD_MS must be a number from 0 to 1,000,000,000, got -5"


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["/srv/.venv/bin/gunicorn", "-c", "robotperf/gunicorn.conf.py"], "gunicorn"),
        (["/srv/.venv/bin/celery", "-A", "robotperf", "worker", "-l", "info"], "celery worker"),
        (["celery", "-A", "robotperf", "beat"], "celery beat"),
        (["manage.py", "compact_sessions", "--dry-run"], "manage.py compact_sessions"),
        ([], ""),
    ],
)
def test_a_process_is_named_by_its_command_line(argv, name):
    assert slow_calls.process_name(argv) == name


def test_the_page_lists_slow_calls_newest_first_linked_to_each_session(
    admin_client, store, slow_log
):
    save_session(store, BIG, turns=30)
    save_session(store, "small-1", turns=3)
    store.load("small-1", window=2)
    store.load(BIG, window=20)
    assert slow_log.flush()

    page = admin_client.get(url("slow_calls")).content.decode()
    assert rows(page) == [
        (LOAD, BIG),
        (LOAD, "small-1"),
        ("robot-v2.save-conversation", "small-1"),
        ("robot-v2.save-conversation", BIG),
    ]
    assert f'href="{url("change", BIG)}"' in page
    assert f'href="{url("profile", BIG)}"' in page
    newest = page[page.index('class="slow-call') :]
    assert '<td class="field-window">20</td>' in newest[: newest.index("</tr>")]
    assert "redis " in newest[: newest.index("</tr>")]


def test_the_page_filters_by_call_and_by_session(admin_client, store, slow_log):
    for cid in ("a-1", "b-2"):
        save_session(store, cid, turns=3)
        store.load(cid)
    assert slow_log.flush()

    by_call = admin_client.get(url("slow_calls"), {"call": LOAD}).content.decode()
    assert rows(by_call) == [(LOAD, "b-2"), (LOAD, "a-1")]
    by_session = admin_client.get(url("slow_calls"), {"conversation_id": "a-1"}).content.decode()
    assert rows(by_session) == [(LOAD, "a-1"), ("robot-v2.save-conversation", "a-1")]
    both = admin_client.get(url("slow_calls"), {"call": LOAD, "conversation_id": "b-2"})
    assert rows(both.content.decode()) == [(LOAD, "b-2")]
    # A call that is no store call's name shows every call, as an empty filter does.
    odd = admin_client.get(url("slow_calls"), {"call": "DROP TABLE"}).content.decode()
    assert len(rows(odd)) == 4


def test_an_empty_log_and_a_key_of_another_type_say_so(admin_client, store):
    page = admin_client.get(url("slow_calls")).content.decode()
    assert "No slow call recorded." in page
    store.client.set(store.keys.slow_log, "not a stream")
    page = admin_client.get(url("slow_calls")).content.decode()
    assert "rp:slowlog cannot be read as the slow-call log" in page
    assert store.client.get(store.keys.slow_log) == b"not a stream"  # left in place


def test_staff_need_the_view_permission(client, staff):
    assert client.get(url("slow_calls")).status_code == 403
    assert client.get(url("workers")).status_code == 403
    grant(staff, "view_conversationsession")
    assert client.get(url("slow_calls")).status_code == 200


def test_the_admin_index_and_the_dashboard_link_to_it(admin_client):
    assert url("slow_calls") in admin_client.get(reverse("admin:index")).content.decode()
    assert url("slow_calls") in admin_client.get(url("dashboard")).content.decode()


def test_the_dashboard_draws_the_loads_of_the_last_hour_from_the_buckets(
    admin_client, store, slow_log
):
    save_session(store, "c1", turns=30)
    for _ in range(40):
        store.load("c1", window=20)
    assert slow_log.flush()

    page = admin_client.get(url("dashboard")).content.decode()
    chart = page[page.index('id="latency"') :]
    minutes = re.findall(r'class="minute (p50|p99)" data-minute="(\d+)" data-seconds="([^"]+)" '
                         r'data-calls="(\d+)"', chart)  # fmt: skip
    counted = {minute: int(calls) for _, minute, _, calls in minutes}
    # The page's own loads (none here: the dashboard reads indexes) and ours, in one or two
    # minutes when the minute turned meanwhile.
    assert sum(counted.values()) == 40
    for kind, minute, seconds, _ in minutes:
        latest = next(m for m in slow_calls.load_latency() if str(m.minute) == minute)
        assert float(seconds) == pytest.approx(latest.p50 if kind == "p50" else latest.p99)


def test_the_dashboard_says_when_no_load_was_counted(admin_client):
    page = admin_client.get(url("dashboard")).content.decode()
    assert "No load counted in the last hour." in page
