"""Every admin page of ours in Vietnamese: rendered in English and in Vietnamese, a text of the
page that reads the same in both is an English string nobody translated.

What may read the same is left out: data (ids, bot names, turn texts, JSON, keys), figures,
sizes and dates, and the few names that are the same in both languages.
"""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from convstore import disable_slow_log
from sessions_app import census, slow_calls
from sessions_app.compaction import CompactionPolicy
from sessions_app.models import ArchivedSession
from tests.sessions_app.admin_pages import url
from tests.sessions_app.factories import save_session

pytestmark = pytest.mark.django_db

CID = "vi-check-1"
DELETED = "vi-check-gone"
# Names that read the same in Vietnamese, and Django's own strings its Vietnamese catalogue
# leaves in English (not ours to translate).
SAME_IN_BOTH = {
    "Redis",
    "p50",
    "p95",
    "JSON",
    "TTL",
    "bot_config",
    "record",
    "input_slots",
    "#",
    "OK",
    "Bot",
    "Bot:",
    "Blob",
    "cfg",
    "store.load",
    "json.loads",
    "orjson.loads",
    "—",
    "-",
    "/",
    "·",
    "\N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}",
    "✓",
    "…",
    "\N{MULTIPLICATION SIGN}",
    "%",
    "(",
    ")",
    ":",
    ",",
    ".",
    "Django",
    "Celery",
    "PENDING",
    "SUCCESS",
    "FAILURE",
    "STARTED",
    "crontab",
    "interval",
    "lz4",
    "Vietnamese",
    "English",
    "Tiếng Việt",
    # The store's tracing phases: span names, the same in the traces and on the profile page.
    "redis",
    "decode",
    "archive",
    "assemble",
    "unattributed",
}
DATA = re.compile(
    r"""^(
        [\d\s.,:/%\N{MULTIPLICATION SIGN}µ-]*                                    # figures and times
        (bytes|byte|KB|MB|GB|µs|ms|s|B)?                   # a size or duration
      | .*(vi-check|bot-vi|user-1|step_|cfg\ |rp:|session:|sessions_app\.|phonemes\.).*  # data
      | (\d+\ )?(a\.m\.|p\.m\.|SA|CH)                      # the half of a day
      | (bot_config\ )?[a-f0-9]{8,}                        # digests, task ids
      | turn\ \d+ | user | assistant | system               # the test sessions' turns
    )$""",
    re.VERBOSE,
)


class Texts(HTMLParser):
    """The visible texts of a page (and its titles, placeholders and labels), outside data: the
    user's name (in #user-tools), scripts, JSON and keys, the options of a menu."""

    SKIPPED = {"script", "style", "pre", "code", "option", "svg"}
    SKIPPED_IDS = {"user-tools"}
    VOID = {"input", "br", "img", "meta", "link", "hr", "source", "wbr", "col", "area", "base"}

    def __init__(self):
        super().__init__()
        self.texts, self.open = set(), []  # per open element: whether it is skipped

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag not in self.VOID:
            skipped = tag in self.SKIPPED or attributes.get("id") in self.SKIPPED_IDS
            self.open.append((tag, skipped))
        if any(skipped for _, skipped in self.open):
            return
        for name, value in attrs:
            if name in ("title", "placeholder", "aria-label") and value:
                self.texts.add(value.strip())
            if name == "value" and attributes.get("type") in ("submit", "button"):
                self.texts.add(value.strip())

    def handle_endtag(self, tag):
        # Close up to the matching element (HTML lets some end tags be left out).
        for i in range(len(self.open) - 1, -1, -1):
            if self.open[i][0] == tag:
                del self.open[i:]
                break

    def handle_data(self, data):
        if data.strip() and not any(skipped for _, skipped in self.open):
            self.texts.add(" ".join(data.split()))


def _our_source():
    """The text of our templates and Python modules, where a string of ours is written."""
    root = Path(__file__).resolve().parents[2]
    files = [
        *(root / "sessions_app").rglob("*.html"),
        *(root / "phonemes").rglob("*.html"),
        *(root / "robotperf" / "templates").rglob("*.html"),
        *(p for app in ("sessions_app", "phonemes") for p in (root / app).rglob("*.py")),
    ]
    # The demo's sessions are data, not strings of the admin.
    data = {"migrations", "demo.py", "seeding.py"}
    return "\n".join(f.read_text() for f in files if not data & {*f.parts, f.name})


OUR_SOURCE = _our_source()


def ours(text):
    """Whether an English text is written in our code (not Django's or a package's): each of its
    runs of words between the values filled in (figures, ids) is."""
    runs = [r.strip(" .,:;()") for r in re.split(r"\S*\d\S*|vi-check\S*", text)]
    runs = [r for r in runs if len(r) >= 4]
    return bool(runs) and all(r in OUR_SOURCE for r in runs)


def texts(page):
    parser = Texts()
    parser.feed(page[page.index("<body") :])
    return {t for t in parser.texts if t not in SAME_IN_BOTH and not DATA.match(t) and ours(t)}


@pytest.fixture
def pages(store, settings):
    settings.ROBOTPERF_COMPACTION = {**settings.ROBOTPERF_COMPACTION, "MAX_TURNS": 100}
    save_session(store, CID, turns=120, bot_id="bot-vi")
    save_session(store, DELETED, turns=3, bot_id="bot-vi")
    census.build(store, CompactionPolicy.from_settings())
    # Slow calls to list and loads to draw, with a window and without.
    settings.SLOW_CALL_LOG, settings.SLOW_CALL_THRESHOLD_MS = True, 0
    slow_log = slow_calls.enable_from_settings()
    store.load(CID, window=20)
    store.load(CID, window=None)
    slow_log.flush()
    disable_slow_log()
    root = get_user_model().objects.create_superuser("root", "r@example.org", "pw")
    client = Client()
    client.force_login(root)
    client.post(url("delete", DELETED))
    archived = ArchivedSession.objects.get(conversation_id=DELETED)
    return client, [
        reverse("admin:index"),
        reverse("admin:app_list", args=["sessions_app"]),
        url("dashboard"),
        url("dashboard") + "?task=0123456789abcdef",
        url("changelist"),
        url("changelist") + "?oversized=1&q=vi",
        url("change", CID),
        url("change", DELETED),
        url("profile", CID),
        url("trim", CID),
        url("compact", CID),
        url("delete", CID),
        url("history", CID),
        url("compact_now"),
        url("slow_calls"),
        url("slow_calls") + "?call=robot-v2.load-conversation&conversation_id=" + CID,
        url("workers"),
        reverse("admin:sessions_app_archivedturn_changelist"),
        reverse("admin:sessions_app_archivedsession_changelist"),
        reverse("admin:sessions_app_archivedsession_change", args=[archived.pk]),
        reverse("admin:phonemes_phonemecacheentry_changelist"),
    ]


def test_every_page_of_ours_is_in_vietnamese(pages):
    client, addresses = pages
    untranslated = {}
    for address in addresses:
        english = client.get(address, headers={"accept-language": "en"})
        vietnamese = client.get(address, headers={"accept-language": "vi"})
        assert english.status_code == vietnamese.status_code == 200, address
        assert 'lang="vi"' in vietnamese.content.decode(), address
        same = texts(english.content.decode()) & texts(vietnamese.content.decode())
        if same:
            untranslated[address] = sorted(same)
    assert untranslated == {}, "\n".join(f"{a}: {t}" for a, t in untranslated.items())


def test_the_profile_result_is_in_vietnamese(pages):
    client, _ = pages
    posted = {"runs": 2, "window": 5}
    english = client.post(url("profile", CID), posted, headers={"accept-language": "en"})
    vietnamese = client.post(url("profile", CID), posted, headers={"accept-language": "vi"})
    same = texts(english.content.decode()) & texts(vietnamese.content.decode())
    assert sorted(same) == [], sorted(same)
