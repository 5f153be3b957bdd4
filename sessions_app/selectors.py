"""Read-only queries over the conversation store and its archive, for the store, admin and stats.

Nothing here writes: the rules that change sessions are in `services.py`.
"""

import bisect
from collections import Counter
from dataclasses import dataclass

from sessions_app.models import ArchivedTurn
from sessions_app.store import CorruptSession, get_store

NO_BOT = "(no bot_id)"
UNREADABLE = "(unreadable)"


@dataclass(frozen=True, kw_only=True)
class SessionStats:
    count: int
    """Sessions in the bytes index (legacy blobs not yet migrated are not counted)."""
    total_bytes: int
    p50: int
    p95: int
    max: int
    histogram: list[tuple[int, int, int]]
    """(low, high, sessions) per power-of-two size band, low inclusive, high exclusive."""
    largest: list[tuple[str, int]]
    per_bot: list[tuple[str, int, int]]
    """(bot_id, sessions, bytes), largest first."""


def archived_turns(conversation_id: str, *, from_seq: int = 0) -> list[dict]:
    """The archived turns of one conversation from ``from_seq`` on, oldest first, with their seq."""
    rows = ArchivedTurn.objects.of_conversation(conversation_id, from_seq=from_seq)
    return [{**turn, "seq": seq} for seq, turn in rows.values_list("seq", "turn")]


def session_stats(*, top: int = 10) -> SessionStats:
    """Sizes of the sessions in Redis: totals, percentiles, a histogram, the largest, per bot."""
    entries = get_store().index_entries()
    sizes = [size for _, size in entries]
    return SessionStats(
        count=len(sizes),
        total_bytes=sum(sizes),
        p50=_percentile(sizes, 0.50),
        p95=_percentile(sizes, 0.95),
        max=sizes[-1] if sizes else 0,
        histogram=_histogram(sizes),
        largest=entries[: -top - 1 : -1] if top else [],
        per_bot=_per_bot(entries),
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
    groups = {}
    for (cid, size), digest in zip(entries, store.bot_config_digests(cids), strict=True):
        group = groups.setdefault(digest, [cid, 0, 0])
        group[1] += 1
        group[2] += size
    sessions, total = Counter(), Counter()
    for digest, (sample, count, size) in groups.items():
        bot = NO_BOT if digest is None else _bot_id(store, sample)
        sessions[bot] += count
        total[bot] += size
    return [(bot, sessions[bot], size) for bot, size in total.most_common()]


def _bot_id(store, conversation_id):
    try:
        session = store.load(conversation_id, window=0)
    except CorruptSession:
        return UNREADABLE
    return str(session.get("bot_id", NO_BOT)) if session else NO_BOT
