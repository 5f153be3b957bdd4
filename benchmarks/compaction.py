"""Compaction benchmark: `compact_oversized` over 10,000 sessions, a tenth of them oversized,
with the archive on SQLite and on PostgreSQL, side by side.

Each database is measured in a process of its own (Django binds its database at start-up):
`python -m benchmarks.compaction` prints one run's figures as JSON, on the DATABASE_URL it is
given. PostgreSQL's
is a throwaway database made on BENCH_POSTGRES_URL's server and dropped afterwards; without a
server there, its column says so. Sessions live under a key prefix of the benchmark's own, so
nothing else in Redis is scanned.
"""

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SESSIONS = int(os.environ.get("BENCH_COMPACTION_SESSIONS", "10000"))
OVERSIZED_EVERY = 10
SMALL_TURNS, LONG_TURNS = 10, 150
PREFIX = "compact-bench-"
TARGET_SCANNED, TARGET_COMPACTED = 2_000, 200
ROOT = Path(__file__).resolve().parent.parent
SQLITE_URL = "sqlite:///var/bench.sqlite3"
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def run():
    figures = {"SQLite": _measure(SQLITE_URL)}
    try:
        with _throwaway_postgres(POSTGRES_URL) as url:
            figures["PostgreSQL"] = _measure(url)
    except OSError as e:
        figures["PostgreSQL"] = {"error": str(e)}
    return _report(figures)


def _measure(database_url):
    """One run in a child process whose database is ``database_url``: its figures."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.compaction"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


class _throwaway_postgres:
    """A database of its own on the server at ``url``, dropped on exit; OSError without one."""

    def __init__(self, url):
        import psycopg

        self.psycopg, self.server = psycopg, url
        self.name = f"robotperf_bench_{os.getpid()}"

    def __enter__(self):
        self._sql(f"CREATE DATABASE {self.name}")
        return self.server.rsplit("/", 1)[0] + "/" + self.name

    def __exit__(self, *exc):
        self._sql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")

    def _sql(self, statement):
        try:
            with self.psycopg.connect(self.server, autocommit=True, connect_timeout=3) as db:
                db.execute(statement)
        except self.psycopg.OperationalError as e:
            raise OSError(f"no PostgreSQL at {self.server}: {e}") from e


# --- one run, in the child process ---------------------------------------------------------


def _one_run():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import override_settings

    from benchmarks.timing import measure
    from sessions_app.services import CompactionPolicy, compact_oversized, plan_compaction
    from sessions_app.store import get_store

    call_command("migrate", verbosity=0)
    policy = CompactionPolicy(max_bytes=64 * 1024 * 1024, max_turns=100, keep_turns=20)
    # A prefix of its own: the scan sees only these sessions, and cleaning up deletes only them.
    with override_settings(ROBOTPERF_STORE={**settings.ROBOTPERF_STORE, "KEY_PREFIX": "rpbench"}):
        store = get_store()
        _clean(store)
        try:
            seed_seconds = _seed(store)
            dry = measure(lambda: plan_compaction(policy), repeat=3, warmup=1)
            real = compact_oversized(policy)
        finally:
            _clean(store)
    return {
        "database": _database(connection),
        "seed_seconds": seed_seconds,
        "dry_seconds": dry.median,
        "batch_size": policy.batch_size,
        **{
            name: getattr(real, name)
            for name in ("scanned", "oversized", "compacted", "turns_archived", "seconds")
        },
        "bytes_before": real.bytes_before,
        "bytes_after": real.bytes_after,
        "skipped": len(real.skipped),
        "failed": len(real.failed),
    }


def _database(connection):
    if connection.vendor == "postgresql":
        version = f"{connection.pg_version // 10000}.{connection.pg_version % 10000}"
    else:
        import sqlite3

        version = sqlite3.sqlite_version
    return f"{connection.display_name} {version}"


def _seed(store):
    from sessions_app import seeding
    from sessions_app.demo import make_session

    started = time.perf_counter()
    sessions = (
        make_session(
            index,
            steps=3,
            turns=LONG_TURNS if index % OVERSIZED_EVERY == 0 else SMALL_TURNS,
            prefix=PREFIX,
        )
        for index in range(SESSIONS)
    )
    seeding.save_many(store, sessions, batch=500)
    return time.perf_counter() - started


def _clean(store):
    from sessions_app.models import ArchivedTurn

    found = store.client.scan_iter(match=f"{store.keys.prefix}:*", count=1000)
    for keys in itertools.batched(found, 1000):
        store.client.delete(*keys)
    ArchivedTurn.objects.filter(conversation_id__startswith=PREFIX).delete()


# --- the report ----------------------------------------------------------------------------


def _report(figures):
    from benchmarks.timing import verdict

    names = list(figures)
    rows = [
        ("dry run: sessions scanned/s", lambda f: SESSIONS / f["dry_seconds"], TARGET_SCANNED),
        ("real run: sessions scanned/s", lambda f: f["scanned"] / f["seconds"], TARGET_SCANNED),
        (
            "real run: sessions compacted/s",
            lambda f: f["compacted"] / f["seconds"],
            TARGET_COMPACTED,
        ),
    ]
    lines = [
        "## Compaction (`compact_sessions`, the Celery task)\n",
        f"| what | {' | '.join(names)} | target |",
        f"|---|{'---|' * len(names)}---|",
    ]
    for what, figure, target in rows:
        cells = [
            "—"
            if "error" in figures[name]
            else f"{figure(figures[name]):,.0f} ({verdict(figure(figures[name]) >= target)})"
            for name in names
        ]
        lines.append(f"| {what} | {' | '.join(cells)} | ≥ {target:,} |")
    lines.append("")
    for name, f in figures.items():
        if "error" in f:
            lines.append(f"{name}: not measured ({f['error']}).\n")
            continue
        lines.append(
            f"{name} ({f['database']}): {f['scanned']:,} scanned, {f['oversized']:,} oversized, "
            f"{f['compacted']:,} compacted in {f['seconds']:.2f} s; {f['turns_archived']:,} turns "
            f"archived; {f['bytes_before'] / 1e6:.1f} MB before, {f['bytes_after'] / 1e6:.1f} MB "
            f"after; {f['skipped']} skipped, {f['failed']} failed; dry run (median of 3) "
            f"{f['dry_seconds']:.2f} s; seeded in {f['seed_seconds']:.1f} s.\n"
        )
    lines.append(
        f"How: {SESSIONS:,} demo sessions (3 steps; {SMALL_TURNS} turns, every "
        f"{OVERSIZED_EVERY}th {LONG_TURNS}) saved in pipelines (`seeding.save_many`) for each "
        f"database; `plan_compaction` (the dry run) and `compact_oversized` with max_turns=100, "
        f"keep_turns=20, batches of 500 sessions: each batch's session locks, trim steps, "
        "removals and index updates pipelined, its archive rows one transaction (PostgreSQL: "
        "COPY, or when a row is archived already, COPY into a temporary table and INSERT ... "
        "ON CONFLICT DO NOTHING; SQLite: one executemany). Each database in a process of its "
        "own; PostgreSQL on a throwaway database on the local server (`BENCH_POSTGRES_URL`), "
        "dropped afterwards; loopback Redis. `python -m benchmarks compaction` runs this "
        "section alone.\n"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(_one_run()))
