"""`manage.py session_stats`: how big the sessions in Redis are, and which bots they belong to.

Counts, totals, p50/p95/max, a size histogram, the largest sessions and per-bot totals.
"""

from django.core.management.base import BaseCommand, CommandError

from sessions_app.reports import as_json, session_stats_table
from sessions_app.selectors import session_stats
from sessions_app.store import StoreError


class Command(BaseCommand):
    help = "Show the sizes of the conversation sessions in Redis."

    def add_arguments(self, parser):
        parser.add_argument("--top", type=int, default=10, help="How many largest to list.")
        parser.add_argument("--format", choices=["table", "json"], default="table")

    def handle(self, *args, **options):
        if options["top"] < 0:
            raise CommandError(f"--top must not be negative, got {options['top']}")
        try:
            stats = session_stats(top=options["top"])
        except StoreError as e:
            raise CommandError(str(e)) from e
        self.stdout.write(
            as_json(stats) if options["format"] == "json" else session_stats_table(stats)
        )
