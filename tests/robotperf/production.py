"""The production environment of the tests that run the project's own processes: DEBUG off,
the three variables robotperf.E003 asks for, the tests' Redis, and a var/ of the test's own."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
# The only variables taken from the tests' own environment (which other tests change, e.g.
# DJANGO_ALLOW_ASYNC_UNSAFE for the browser): the rest is the production environment below.
KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
HTTPS = {
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
}


def production_env(var_dir, **extra):
    env = {name: os.environ[name] for name in KEPT if name in os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="robotperf.settings",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        API_TOKEN=secrets.token_urlsafe(32),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        REDIS_URL=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        ROBOTPERF_VAR_DIR=str(var_dir),
    )
    env.update(extra)
    return env


def manage(env, *args, timeout=60):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def warning_ids(output):
    return set(re.findall(r"\(([\w.]+\.W\d+)\)", output))


def explained_warning_ids():
    """The check ids docs/OPERATIONS.md explains in its "Deploying" section."""
    text = OPERATIONS.read_text()
    section = text.split("\n## Deploying", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`([\w.]+\.W\d+)`", section))
