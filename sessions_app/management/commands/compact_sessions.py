"""`manage.py compact_sessions`: archive and trim oversized sessions by hand, as the task does.

Options override the compaction policy in settings; the report prints as a table or JSON.
"""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from sessions_app.reports import as_json, compact_report_table
from sessions_app.services import CompactionPolicy, compact_oversized
from sessions_app.store import StoreError


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
            help="Only this conversation (repeatable).",
        )
        parser.add_argument("--limit", type=int, help="Stop after compacting this many.")
        parser.add_argument("--migrate-legacy", action="store_true", help="Move legacy blobs.")
        parser.add_argument("--rebuild-indexes", action="store_true", help="SCAN, reindex.")
        parser.add_argument("--format", choices=["table", "json"], default="table")

    def handle(self, *args, **options):
        names = ("max_bytes", "max_turns", "keep_turns", "pinned")
        with tqdm(unit=" sessions", disable=not self.stderr.isatty(), file=self.stderr) as bar:
            try:
                report = compact_oversized(
                    CompactionPolicy.from_settings(**{name: options[name] for name in names}),
                    limit=options["limit"],
                    dry_run=options["dry_run"],
                    progress=bar.update,
                    conversation_ids=options["conversations"],
                    migrate_legacy=options["migrate_legacy"],
                    rebuild=options["rebuild_indexes"],
                )
            except (ValueError, StoreError) as e:
                raise CommandError(str(e)) from e
        self.stdout.write(
            as_json(report) if options["format"] == "json" else compact_report_table(report)
        )
