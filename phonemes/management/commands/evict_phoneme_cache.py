"""`manage.py evict_phoneme_cache`: drop stale phoneme cache rows, then cap the table."""

from datetime import timedelta

import orjson
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from phonemes.services import MAX_OLDER_THAN, evict_stale


class Command(BaseCommand):
    help = "Delete rows unused for --older-than-days, then the least recently used over the caps."

    def add_arguments(self, parser):
        defaults = settings.ROBOTPERF_PHONEMES
        parser.add_argument(
            "--older-than-days", type=float, default=defaults["EVICT_OLDER_THAN_DAYS"]
        )
        parser.add_argument("--max-rows", type=int, default=defaults["EVICT_MAX_ROWS"])
        parser.add_argument("--max-bytes", type=int, default=defaults["EVICT_MAX_BYTES"])
        parser.add_argument("--batch", type=int, default=defaults["EVICT_BATCH"])
        parser.add_argument("--dry-run", action="store_true", help="Report, delete nothing.")
        parser.add_argument("--format", choices=["table", "json"], default="table")

    def handle(self, *, older_than_days, max_rows, max_bytes, batch, dry_run, format, **options):
        # A comparison that NaN fails too; inf and 1e10 would overflow timedelta.
        if not 0 <= older_than_days <= MAX_OLDER_THAN.days:
            raise CommandError(
                f"--older-than-days must be a number from 0 to {MAX_OLDER_THAN.days}, "
                f"got {older_than_days:g}"
            )
        try:
            report = evict_stale(
                older_than=timedelta(days=older_than_days),
                max_rows=max_rows,
                max_bytes=max_bytes,
                batch=batch,
                dry_run=dry_run,
            )
        except ValueError as e:
            raise CommandError(str(e)) from e
        except DatabaseError as e:
            raise CommandError(f"database error: {e}") from e
        if format == "json":
            self.stdout.write(orjson.dumps(report.as_dict()).decode())
            return
        width = max(len(name) for name in report.as_dict())
        for name, value in report.as_dict().items():
            self.stdout.write(f"{name.replace('_', ' '):<{width}}  {value}")
