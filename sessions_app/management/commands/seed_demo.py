"""`manage.py seed_demo`: the demo sessions `make run` starts with, into an empty store only."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sessions_app.seeding import seed_demo
from sessions_app.store import StoreError


class Command(BaseCommand):
    help = "Seed everyday, oversized and legacy demo sessions when the store is empty."

    def handle(self, **options):
        try:
            batches = seed_demo()
        except StoreError as e:
            raise CommandError(str(e)) from e
        if not batches:
            self.stdout.write(
                f"Demo seeding skipped: the store at {_redis(settings.REDIS_URL)} already holds"
                " sessions (nothing seeded)."
            )
            return
        total = sum(len(batch.conversation_ids) for batch in batches)
        self.stdout.write(f"Seeded {total} demo sessions (everyday, oversized and legacy).")


def _redis(url):
    """The Redis URL without its password."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"
