"""`manage.py compact_sessions`: archive and trim oversized sessions by hand, as the task does.

Options override the compaction policy in settings; the report prints as a table or JSON. A
real run takes the scheduled task's lock, so the two never overlap.
"""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from locks import LockHeld, LockUnavailable
from sessions_app.reports import as_json, compact_report_table
from sessions_app.services import CompactionPolicy, compact_oversized, plan_compaction
from sessions_app.store import StoreError

# The smallest value of each numeric option; the policy checks how they fit together.
MINIMUM = {"max_bytes": 1, "max_turns": 1, "keep_turns": 1, "pinned": 0, "limit": 1}
POLICY = ("max_bytes", "max_turns", "keep_turns", "pinned")


class Command(BaseCommand):
    help = "Archive and trim oversized conversation sessions, keeping every turn."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Report, write nothing.")
        parser.add_argument("--max-bytes", type=int, help="Oversized above this many bytes.")
        parser.add_argument("--max-turns", type=int, help="Oversized above this many turns.")
        parser.add_argument("--keep-turns", type=int, help="Turns kept in Redis.")
        parser.add_argument("--pinned", type=int, help="First turns never archived.")
        parser.add_argument(
            "--conversation",
            action="append",
            dest="conversations",
            metavar="ID",
            help="Only this conversation (repeatable); exits non-zero if one does not exist.",
        )
        parser.add_argument("--limit", type=int, help="Stop after compacting this many.")
        parser.add_argument("--migrate-legacy", action="store_true", help="Move legacy blobs.")
        parser.add_argument("--rebuild-indexes", action="store_true", help="SCAN, reindex.")
        parser.add_argument("--format", choices=["table", "json"], default="table")

    def handle(self, *args, **options):
        for name, low in MINIMUM.items():
            if options[name] is not None and options[name] < low:
                option = "--" + name.replace("_", "-")
                raise CommandError(f"{option} must be at least {low}, got {options[name]}")
        if options["dry_run"] and options["rebuild_indexes"]:
            raise CommandError("--rebuild-indexes writes the indexes: not with --dry-run")
        with tqdm(unit=" sessions", disable=not self.stderr.isatty(), file=self.stderr) as bar:
            try:
                report = self.compact(options, progress=bar.update)
            except (ValueError, StoreError, LockHeld, LockUnavailable) as e:
                raise CommandError(str(e)) from e
        self.stdout.write(
            as_json(report) if options["format"] == "json" else compact_report_table(report)
        )
        if report.missing:
            raise CommandError(f"no such conversation: {', '.join(report.missing)}")

    def compact(self, options, *, progress):
        policy = CompactionPolicy.from_settings(**{name: options[name] for name in POLICY})
        common = {
            "limit": options["limit"],
            "progress": progress,
            "conversation_ids": options["conversations"],
            "migrate_legacy": options["migrate_legacy"],
        }
        if options["dry_run"]:
            return plan_compaction(policy, **common)
        return compact_oversized(policy, rebuild=options["rebuild_indexes"], **common)
