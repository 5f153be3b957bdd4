"""Read-only queries over the conversation store and its archive, for the store, admin and stats.

Nothing here writes: the rules that change sessions are in `services.py`.
"""

import bisect
from collections import Counter
from dataclasses import dataclass, field

from redis.cluster import RedisCluster

from convstore import MinuteLatency
from convstore.keys import INC, check_cid
from phonemes import selectors as phoneme_selectors
from sessions_app import census, indexes, inspection, jobs, legacy_blobs, maintenance, slow_calls
from sessions_app.census import Census
from sessions_app.inspection import SessionParts, SessionRow
from sessions_app.models import ArchivedSession, ArchivedTurn
from sessions_app.services import plan_compaction
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
    legacy, legacy_bytes, wrong_legacy = legacy_blobs.legacy_totals(store)
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
    jobs: list[jobs.ScheduledJob]
    memory: "RedisMemory"
    problems: list[str]
    """Bad entries of the indexes the page read, and indexes of another type."""
    latency: list[MinuteLatency]
    """The p50 and p99 of every process's loads in each of the last 60 minutes."""


@dataclass(frozen=True, kw_only=True)
class SessionQuery:
    sort: str = "size"
    descending: bool = True
    oversized: bool = False
    legacy: bool = False
    """Only the legacy blobs still to migrate (as the census found them)."""
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
    """Archived turns of the incarnation in Redis (of every incarnation when none is)."""
    archived_in_redis: int = 0
    """Of those, the turns Redis holds too (a restore puts the last ones back, and the archive
    keeps its copy)."""
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
    """How much memory Redis uses, and how much it may (INFO memory); on a cluster, its
    fullest primary's (one full node refuses the writes of its slots)."""
    client = get_store().client
    if isinstance(client, RedisCluster):
        infos = client.info("memory", target_nodes=RedisCluster.PRIMARIES)
        infos = [infos] if "used_memory" in infos else list(infos.values())
        info = max(infos, key=lambda i: i["used_memory"] / (i["maxmemory"] or float("inf")))
    else:
        info = client.info("memory")
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
        jobs=jobs.scheduled_jobs(),
        memory=redis_memory(),
        problems=_index_problems(store) + list(map(str, summary.bad_scores)),
        latency=slow_calls.load_latency(),
    )


def _index_problems(store):
    return [str(bad.error) for bad in indexes.wrong_types(store)]


def session_page(query: SessionQuery, policy) -> SessionPage:
    """One page of the session list, sorted and filtered in Redis, or the search's matches."""
    store = get_store()
    counted = census.current(store, policy)
    problems = _index_problems(store)
    keys = store.keys
    within = [keys.census("oversized")] if query.oversized else []
    within += [keys.census_bot(query.bot)] if query.bot else []
    within += [keys.census("legacy")] if query.legacy else []
    if query.search:
        cids = _within(store, _search(store, query.search), within)
        total = len(cids)
        cids = cids[(query.page - 1) * PER_PAGE : query.page * PER_PAGE]
        source = store.keys.census("ids")
    else:
        source = {"size": keys.index_bytes, "seen": keys.index_seen}.get(query.sort)
        source = source or keys.census("turns")
        if query.legacy:  # blobs are in no index but the census's own set of them
            source, within = within.pop(), within
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


def _within(store, cids, sets):
    """The ``cids`` that are members of each of the census ``sets`` (the list's filters)."""
    if not cids or not sets:
        return cids
    pipe = store.client.pipeline(transaction=False)
    for key in sets:
        pipe.zmscore(key, cids)
    replies = pipe.execute(raise_on_error=False)
    if any(isinstance(reply, Exception) for reply in replies):  # named by the page's problems
        return []
    return [cid for i, cid in enumerate(cids) if all(r[i] is not None for r in replies)]


def session_detail(conversation_id: str) -> SessionDetail:
    """Where one session's bytes are, its last turns, and what the archive holds of it.

    Raises SessionNotFound when neither Redis nor the archive knows the conversation.
    """
    store = get_store()
    try:
        parts = inspection.session_parts(store, conversation_id)
    except SessionNotFound:
        parts = None
    turns = ArchivedTurn.objects.filter(conversation_id=conversation_id)
    in_redis = 0
    if parts is not None and parts.layout == "split":
        incarnation = store.client.hget(store.keys.state(conversation_id), INC)
        turns = turns.filter(incarnation=(incarnation or b"").decode(errors="replace"))
        # Redis holds the last ``parts.turns`` seqs before next_seq (trims keep a tail).
        tail = (parts.next_seq or 0) - parts.turns
        in_redis = turns.filter(seq__gte=tail).count() if parts.turns else 0
    archived = turns.count()
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
        archived_in_redis=in_redis,
        archived_session=whole,
        bot_config_shared_by=shared,
        memory=redis_memory(),
    )


def session_size(conversation_id: str) -> maintenance.SessionSize:
    """Bytes and turns of one session in Redis now, for a confirm page."""
    (size,) = maintenance.session_sizes(get_store(), [conversation_id])
    return size


def compaction_plan(policy, conversation_ids=None):
    """What compaction would do now (a dry run, nothing written): of these sessions, or of
    every oversized or idle one.

    A dry run over every session takes ~2 s at 20,000: when no session is archived for being
    idle, the plan looks at the sessions the census counts as oversized (its set is kept up to
    date by every operation), and at every session only when there is no census yet.
    """
    store = get_store()
    if conversation_ids is None and not policy.idle_archive_after and census.read(store):
        oversized = store.client.zrange(store.keys.census("oversized"), 0, -1)
        conversation_ids = [cid.decode() for cid in oversized]
    return plan_compaction(policy, conversation_ids=conversation_ids)
