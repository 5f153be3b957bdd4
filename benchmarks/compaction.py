"""Compaction benchmark: `compact_oversized` over 10,000 sessions, a tenth of them oversized.

Seeds its sessions under a key prefix of its own, so nothing else in the database is scanned.
"""

import itertools
import time

from django.conf import settings
from django.test import override_settings

from benchmarks.timing import measure, verdict
from sessions_app.demo import make_session
from sessions_app.models import ArchivedTurn
from sessions_app.services import CompactionPolicy, compact_oversized, plan_compaction
from sessions_app.store import get_store

SESSIONS = 10_000
OVERSIZED_EVERY = 10
SMALL_TURNS, LONG_TURNS = 10, 150
PREFIX = "compact-bench-"
POLICY = CompactionPolicy(max_bytes=64 * 1024 * 1024, max_turns=100, keep_turns=20)
TARGET_SCANNED, TARGET_COMPACTED = 2_000, 200


def run():
    # A prefix of its own: the scan sees only these sessions, and cleaning up deletes only them.
    with override_settings(ROBOTPERF_STORE={**settings.ROBOTPERF_STORE, "KEY_PREFIX": "rpbench"}):
        store = get_store()
        _clean(store)
        try:
            seconds = _seed(store)
            dry = measure(lambda: plan_compaction(POLICY), repeat=3, warmup=1)
            real = compact_oversized(POLICY)
        finally:
            _clean(store)
    return _report(dry.median, real, seconds)


def _seed(store):
    started = time.perf_counter()
    for index in range(SESSIONS):
        turns = LONG_TURNS if index % OVERSIZED_EVERY == 0 else SMALL_TURNS
        store.save(make_session(index, steps=3, turns=turns, prefix=PREFIX))
    return time.perf_counter() - started


def _clean(store):
    found = store.client.scan_iter(match=f"{store.keys.prefix}:*", count=1000)
    for keys in itertools.batched(found, 1000):
        store.client.delete(*keys)
    ArchivedTurn.objects.filter(conversation_id__startswith=PREFIX).delete()


def _report(dry_seconds, real, seed_seconds):
    oversized = SESSIONS // OVERSIZED_EVERY
    dry_scanned = SESSIONS / dry_seconds
    real_scanned = real.scanned / real.seconds
    compacted = real.compacted / real.seconds
    rows = [
        ("dry run: sessions scanned/s", dry_scanned, TARGET_SCANNED),
        ("real run: sessions scanned/s", real_scanned, TARGET_SCANNED),
        ("real run: sessions compacted/s", compacted, TARGET_COMPACTED),
    ]
    lines = [
        "## Compaction (`compact_sessions`, the Celery task)\n",
        "| what | figure | target | verdict |",
        "|---|---|---|---|",
        *(
            f"| {what} | {value:,.0f} | ≥ {target:,} | {verdict(value >= target)} |"
            for what, value, target in rows
        ),
        "",
        f"Real run: {real.scanned:,} scanned, {real.oversized:,} oversized, "
        f"{real.compacted:,} compacted in {real.seconds:.2f} s; {real.turns_archived:,} turns "
        f"archived; {real.bytes_before / 1e6:.1f} MB before, "
        f"{real.bytes_after / 1e6:.1f} MB after; "
        f"{len(real.skipped)} skipped, {len(real.failed)} failed. Dry run: median of 3, "
        f"{dry_seconds:.2f} s.\n",
        f"How: {SESSIONS:,} demo sessions (3 steps; {SMALL_TURNS} turns, every "
        f"{OVERSIZED_EVERY}th {LONG_TURNS}: {oversized:,} oversized) saved through the store in "
        f"{seed_seconds:.1f} s; `plan_compaction` (the dry run) and `compact_oversized` with "
        f"max_turns={POLICY.max_turns}, keep_turns={POLICY.keep_turns}, batches of "
        f"{POLICY.batch_size}, archive in the benchmark's SQLite database; loopback Redis.\n",
    ]
    return "\n".join(lines)
