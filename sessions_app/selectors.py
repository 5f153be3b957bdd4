"""Read-only queries over the conversation store and its archive, for the store, admin and stats.

Nothing here writes: the rules that change sessions are in `services.py`.
"""

import bisect
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from convstore.keys import check_cid
from phonemes import selectors as phoneme_selectors
from sessions_app import census, indexes, inspection, maintenance
from sessions_app.census import Census
from sessions_app.inspection import SessionParts, SessionRow
from sessions_app.models import ArchivedSession, ArchivedTurn
from sessions_app.store import CorruptSession, SessionNotFound, get_store


@dataclass(frozen=True, kw_only=True)
class SessionStats:
    count: int
    """Sessions in the bytes index, in the split layout."""
    total_bytes: int
    p50: int
    p95: int
    max: int
    histogram: list[tuple[int, int, int]]
    """(low, high, sessions) per power-of-two size band, low inclusive, high exclusive."""
    largest: list[tuple[str, int]]
    per_bot: list[tuple[str, int, int]]
    """(bot_id, sessions, bytes), largest first."""
    legacy: int = 0
    """Legacy blobs still to migrate (not in the figures above)."""
    legacy_bytes: int = 0
    corrupt: list[dict] = field(default_factory=list)
    """{conversation_id, key, reason} of each session whose keys cannot be read, and of each
    bad index entry (conversation_id: the entry as text, or the index when it is of another
    type)."""


def session_stats(*, top: int = 10) -> SessionStats:
    """Sizes of the sessions in Redis: totals, percentiles, a histogram, the largest, per bot."""
    store = get_store()
    entries, bad = indexes.size_entries(store)
    sizes = [size for _, size in entries]
    legacy, legacy_bytes, wrong_legacy = maintenance.legacy_totals(store)
    per_bot, corrupt = _per_bot(entries)
    for entry, error in indexes.wrong_types(store) + bad:
        corrupt.append({"conversation_id": entry, "key": error.key, "reason": str(error)})
    for key in wrong_legacy:
        error = CorruptSession(key, "holds another type than a legacy blob (a string)")
        cid = store.keys.cid_from_legacy(key)
        corrupt.append({"conversation_id": cid, "key": key, "reason": str(error)})
    return SessionStats(
        count=len(sizes),
        total_bytes=sum(sizes),
        p50=_percentile(sizes, 0.50),
        p95=_percentile(sizes, 0.95),
        max=sizes[-1] if sizes else 0,
        histogram=_histogram(sizes),
        largest=entries[: -top - 1 : -1] if top else [],
        per_bot=per_bot,
        legacy=legacy,
        legacy_bytes=legacy_bytes,
        corrupt=corrupt,
    )


def _percentile(ordered, fraction):
    return ordered[round(fraction * (len(ordered) - 1))] if ordered else 0


def _histogram(ordered):
    if not ordered:
        return []
    bands = []
    low = 1 << (ordered[0].bit_length() - 1) if ordered[0] else 0
    high = max(2 * low, 1)
    while low <= ordered[-1]:
        count = bisect.bisect_left(ordered, high) - bisect.bisect_left(ordered, low)
        bands.append((low, high, count))
        low, high = high, high * 2
    return bands


def _per_bot(entries):
    # Sessions of one bot share one content-addressed bot_config, so grouping by its digest
    # costs one small HGET per session; one session of each group names the bot.
    store = get_store()
    cids = [cid for cid, _ in entries]
    groups, corrupt = {}, []
    for (cid, size), digest in zip(
        entries, maintenance.bot_config_digests(store, cids), strict=True
    ):
        if isinstance(digest, CorruptSession):
            corrupt.append({"conversation_id": cid, "key": digest.key, "reason": str(digest)})
            digest = census.UNREADABLE
        group = groups.setdefault(digest, [cid, 0, 0])
        group[1] += 1
        group[2] += size
    sessions, total = Counter(), Counter()
    for digest, (sample, count, size) in groups.items():
        try:
            bot = (
                census.UNREADABLE
                if digest == census.UNREADABLE
                else census.bot_of(store, digest or "", sample)
            )
        except CorruptSession as e:  # its shared bot_config, or the session read for its name
            corrupt.append({"conversation_id": sample, "key": e.key, "reason": str(e)})
            bot = census.UNREADABLE
        sessions[bot] += count
        total[bot] += size
    return [(bot, sessions[bot], size) for bot, size in total.most_common()], corrupt


# --- the sessions admin -----------------------------------------------------------------
# Pages read the index ZSETs through pipelines and decode only the sessions they show; totals
# that need every session come from the census (census.py), the one cache these may refill.

SORTS = ("size", "turns", "seen")
PER_PAGE = 50
SEARCH_LIMIT = 1000
TOP = 20
RUNS_SHOWN = 5


@dataclass(frozen=True, kw_only=True)
class Dashboard:
    sessions: int
    p50: int
    p95: int
    max: int
    histogram: list[tuple[int, int, int]]
    """(low, high, sessions) per power-of-two size band, low inclusive, high exclusive."""
    largest: list[SessionRow]
    census: Census | None
    """Totals per bot, oversized, legacy: None until the first count of a large store."""
    phonemes: object
    jobs: list["ScheduledJob"]
    memory: "RedisMemory"
    problems: list[str]
    """Bad entries of the indexes the page read, and indexes of another type."""


@dataclass(frozen=True, kw_only=True)
class JobRun:
    status: str
    done_at: datetime | None
    seconds: float | None
    summary: str
    failed: bool


@dataclass(frozen=True, kw_only=True)
class ScheduledJob:
    name: str
    task: str
    schedule: str
    enabled: bool
    last_run_at: datetime | None
    runs: list[JobRun]


@dataclass(frozen=True, kw_only=True)
class SessionQuery:
    sort: str = "size"
    descending: bool = True
    oversized: bool = False
    bot: str = ""
    """A bot_config digest, as the census groups sessions."""
    search: str = ""
    page: int = 1


@dataclass(frozen=True, kw_only=True)
class SessionPage:
    rows: list[SessionRow]
    total: int
    page: int
    pages: int
    census: Census | None
    memory: "RedisMemory"
    problems: list[str]
    """Why rows are missing (a sorted set of another type), and indexes of another type."""


@dataclass(frozen=True, kw_only=True)
class SessionDetail:
    conversation_id: str
    parts: SessionParts | None
    """None when Redis no longer holds it (archived whole, deleted or expired)."""
    archived_turns: int
    archived_session: ArchivedSession | None
    bot_config_shared_by: int | None
    memory: "RedisMemory"


@dataclass(frozen=True, kw_only=True)
class RedisMemory:
    used: int
    maxmemory: int
    """0: no limit."""
    policy: str

    @property
    def full(self):
        return bool(self.maxmemory) and self.used >= FULL_AT * self.maxmemory


FULL_AT = 0.95
"""The share of maxmemory from which the pages say Redis is full: it refuses writes a little
before INFO shows it used up (the refused write is not counted)."""


def redis_memory() -> RedisMemory:
    """How much memory Redis uses, and how much it may (INFO memory)."""
    info = get_store().client.info("memory")
    return RedisMemory(
        used=info["used_memory"],
        maxmemory=info["maxmemory"],
        policy=info.get("maxmemory_policy", ""),
    )


def dashboard(policy) -> Dashboard:
    """The size dashboard: live figures from the bytes index, totals from the census."""
    store = get_store()
    summary = indexes.index_summary(store, top=TOP)
    largest = [member for member, _ in summary.largest]
    return Dashboard(
        sessions=summary.sessions,
        p50=summary.p50,
        p95=summary.p95,
        max=summary.max,
        histogram=summary.histogram,
        largest=inspection.session_rows(store, largest, source=store.keys.index_bytes),
        census=census.current(store, policy),
        phonemes=phoneme_selectors.cache_summary(),
        jobs=scheduled_jobs(),
        memory=redis_memory(),
        problems=_index_problems(store) + list(map(str, summary.bad_scores)),
    )


def _index_problems(store):
    return [str(bad.error) for bad in indexes.wrong_types(store)]


def session_page(query: SessionQuery, policy) -> SessionPage:
    """One page of the session list, sorted and filtered in Redis, or the search's matches."""
    store = get_store()
    counted = census.current(store, policy)
    problems = _index_problems(store)
    if query.search:
        cids = _search(store, query.search)
        total = len(cids)
        cids = cids[(query.page - 1) * PER_PAGE : query.page * PER_PAGE]
        source = store.keys.census("ids")
    else:
        keys = store.keys
        source = {"size": keys.index_bytes, "seen": keys.index_seen}.get(query.sort)
        within = [keys.census("oversized")] if query.oversized else []
        within += [keys.census_bot(query.bot)] if query.bot else []
        source = source or keys.census("turns")
        page = indexes.index_page(
            store,
            source,
            offset=(query.page - 1) * PER_PAGE,
            limit=PER_PAGE,
            descending=query.descending,
            within=within or None,
        )
        total, cids = page.total, [member for member, _ in page.entries]
        problems += [page.problem] if page.problem and page.problem not in problems else []
    return SessionPage(
        rows=inspection.session_rows(store, cids, source=source),
        total=total,
        page=query.page,
        pages=max(1, -(-total // PER_PAGE)),
        census=counted,
        memory=redis_memory(),
        problems=problems,
    )


def _search(store, text):
    """The exact id first, if it exists, then the ids that start with ``text``, largest first."""
    matches = indexes.find_by_prefix(store, text, limit=SEARCH_LIMIT)
    cids = [cid for cid, _ in matches if cid != text]
    try:
        exact = inspection.session_exists(store, check_cid(text))
    except ValueError:  # braces, which no conversation id holds
        exact = False
    return [text, *cids] if exact else cids


def session_detail(conversation_id: str) -> SessionDetail:
    """Where one session's bytes are, its last turns, and what the archive holds of it.

    Raises SessionNotFound when neither Redis nor the archive knows the conversation.
    """
    store = get_store()
    try:
        parts = inspection.session_parts(store, conversation_id)
    except SessionNotFound:
        parts = None
    archived = ArchivedTurn.objects.filter(conversation_id=conversation_id).count()
    whole = ArchivedSession.objects.filter(conversation_id=conversation_id).first()
    if parts is None and not archived and whole is None:
        raise SessionNotFound(conversation_id)
    counted = census.read(store)
    shared = None
    if parts is not None and parts.bot_config_digest and counted is not None:
        shared = next(
            (b.sessions for b in counted.bots if b.digest == parts.bot_config_digest), None
        )
    return SessionDetail(
        conversation_id=conversation_id,
        parts=parts,
        archived_turns=archived,
        archived_session=whole,
        bot_config_shared_by=shared,
        memory=redis_memory(),
    )


def scheduled_jobs(*, runs: int = RUNS_SHOWN) -> list[ScheduledJob]:
    """The beat schedules of our tasks, each with its last runs from django-celery-results."""
    jobs = []
    for task in PeriodicTask.objects.exclude(task__startswith="celery.").order_by("name"):
        results = TaskResult.objects.filter(task_name=task.task).order_by("-date_done")[:runs]
        jobs.append(
            ScheduledJob(
                name=task.name,
                task=task.task,
                schedule=str(task.scheduler) if task.scheduler else "",
                enabled=task.enabled,
                last_run_at=task.last_run_at,
                runs=[_job_run(result) for result in results],
            )
        )
    return jobs


def _job_run(result):
    try:
        value = json.loads(result.result) if result.result else None
    except ValueError:
        value = result.result
    seconds = value.get("seconds") if isinstance(value, dict) else None
    if seconds is None and result.date_created and result.date_done > result.date_created:
        seconds = (result.date_done - result.date_created).total_seconds()
    failed = result.status in ("FAILURE", "REVOKED")
    return JobRun(
        status=result.status,
        done_at=result.date_done,
        seconds=seconds,
        summary=_summary(value, failed),
        failed=failed,
    )


def _summary(value, failed):
    """What a run did, in one line: its report's non-zero figures, or the error."""
    if failed and isinstance(value, dict):
        return f"{value.get('exc_type', 'Error')}: {value.get('exc_message', '')}"[:300]
    if not isinstance(value, dict):
        return "" if value is None else str(value)[:300]
    shown = [
        f"{name.replace('_', ' ')} {figure}"
        for name, figure in value.items()
        if name != "seconds" and isinstance(figure, int | float | str) and figure not in (0, "")
    ]
    shown += [
        f"{name} {len(items)}" for name, items in value.items() if isinstance(items, list) and items
    ]
    return ", ".join(shown)[:300]
