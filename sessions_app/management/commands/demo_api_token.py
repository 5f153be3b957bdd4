"""`manage.py demo_api_token`: the session API's bearer token for `make run`, and where to use it.

Prints the token alone on stdout (the Makefile exports it as API_TOKEN for the web process) and,
on stderr, the API's address and the header to send, the way the superuser's password is shown.
API_TOKEN, when set, is the token; otherwise one is generated once and kept in a file under
var/ (readable by its owner only), so it stays the same from one `make run` to the next.
"""

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print the session API's token (API_TOKEN, or one generated and kept under var/)."

    def add_arguments(self, parser):
        parser.add_argument("--address", default="http://127.0.0.1:8000")
        parser.add_argument("--file", type=Path, default=settings.VAR_DIR / "api-token")

    def handle(self, *, address, file, **options):
        token, origin = os.environ.get("API_TOKEN", ""), "from API_TOKEN"
        if not token:
            token, origin = _kept_token(file)
        self.stderr.write(
            f"Session API: GET {address}/api/sessions/<conversation_id>?window=20 with the header"
            f' "Authorization: Bearer {token}" ({origin}).'
        )
        self.stdout.write(token)


def _kept_token(file):
    """The token kept in ``file``, generated there the first time."""
    try:
        token = file.read_text().strip()
    except FileNotFoundError:
        token = ""
    if token:
        return token, f"kept in {file}; set API_TOKEN to choose another"
    file.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(token + "\n")
    return token, f"generated now and kept in {file}; set API_TOKEN to choose another"
