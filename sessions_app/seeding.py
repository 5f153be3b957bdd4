"""Writing demo sessions: the demo `make run` starts with, and seeds for tests and benchmarks.

Sessions come from demo.py; they are written through the store in pipelines, or as the robot's
old JSON blobs (to try the legacy reads and migration).
"""

import itertools
import json
from dataclasses import dataclass

from convstore.keys import check_cid
from convstore.protocol import Command
from sessions_app import demo, maintenance
from sessions_app.store import get_store

# Sessions per pipeline: few round trips, bounded memory.
BATCH = 200


@dataclass(frozen=True, slots=True)
class SeedResult:
    conversation_ids: list[str]
    skipped: bool = False


def seed_sessions(
    *,
    count: int,
    steps: int,
    turns: int,
    legacy: bool = False,
    if_empty: bool = False,
    prefix: str = "demo-",
    start: int = 0,
    seed: int = demo.DEFAULT_SEED,
) -> SeedResult:
    """Write ``count`` demo sessions numbered from ``start``, through the store or as legacy blobs.

    Legacy blobs are stdlib JSON at the legacy key, as the robot wrote them; the store reads
    them transparently. With ``if_empty``, nothing is written when the store holds any session.
    """
    if min(count, turns, start) < 0 or steps < 1:
        raise ValueError(
            f"count, turns and start must be >= 0 and steps >= 1 "
            f"(got count={count}, steps={steps}, turns={turns}, start={start})"
        )
    if not prefix or "{" in prefix or "}" in prefix:
        raise ValueError(f"prefix must be non-empty and without braces, got {prefix!r}")
    store = get_store()
    indexes = range(start, start + count)
    if if_empty and not maintenance.is_empty(store):
        return SeedResult([], skipped=True)
    sessions = (
        demo.make_session(i, steps=steps, turns=turns, seed=seed, prefix=prefix) for i in indexes
    )
    (save_legacy if legacy else save_many)(store, sessions)
    return SeedResult([f"{prefix}{i:06d}" for i in indexes])


# The demo `make run` starts with: everyday sessions, oversized ones for the scheduled
# compaction to trim, and legacy blobs for it to migrate.
DEMO_BATCHES = (
    {"count": 200, "steps": 60, "turns": 200, "prefix": "demo-"},
    {"count": 20, "steps": 120, "turns": 800, "prefix": "demo-long-"},
    {"count": 20, "steps": 60, "turns": 100, "prefix": "demo-legacy-", "legacy": True},
)


def seed_demo() -> list[SeedResult]:
    """Write the demo sessions into an empty store; nothing when it holds any session."""
    if not maintenance.is_empty(get_store()):
        return []
    return [seed_sessions(**batch) for batch in DEMO_BATCHES]


def save_many(store, sessions, *, batch=BATCH):
    """Create or replace many conversations, ``batch`` of them per round trip; how many."""
    written = 0
    for chunk in itertools.batched(sessions, batch):
        store.run(store.core.replace_many(chunk))
        written += len(chunk)
    return written


def save_legacy(store, sessions, *, batch=BATCH):
    """Write sessions as the robot's old stdlib-json blobs: demo data and migration drills."""
    for chunk in itertools.batched(sessions, batch):
        store.ask(
            [
                Command("set", (key, json.dumps(session), store.ttl or None))
                for key, session in (
                    (store.keys.legacy(check_cid(s["conversation_id"])), s) for s in chunk
                )
            ]
        )
