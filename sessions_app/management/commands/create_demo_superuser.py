"""Create the demo's superuser with a generated password, printed this once."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create a superuser with a generated password and print it once; no-op if one exists."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *, username, **options):
        if not username.strip():
            raise CommandError("--username must not be empty")
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            self.stdout.write("A superuser exists already; its password was printed at creation.")
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser(username, email="", password=password)
        self.stdout.write(f"Superuser {username!r} created with password {password} (shown once).")
