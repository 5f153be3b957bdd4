"""The phoneme settings' system check: an impossible number or URL is an error at start, named as
the environment variable that sets it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings

from phonemes.checks import check_limits

ROOT = Path(__file__).resolve().parents[2]


def errors_with(**options):
    with override_settings(ROBOTPERF_PHONEMES={**settings.ROBOTPERF_PHONEMES, **options}):
        return [(e.id, e.msg) for e in check_limits()]


def test_the_project_settings_pass_and_the_check_is_registered():
    assert check_limits() == []
    with override_settings(ROBOTPERF_PHONEMES={**settings.ROBOTPERF_PHONEMES, "POOL_SIZE": 0}):
        assert [e.id for e in run_checks()] == ["phonemes.E001"]


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        ("POOL_SIZE", 0, "an integer from 1 to"),
        ("CONNECT_TIMEOUT", 0.0, "a number from 0.001 to"),
        ("READ_TIMEOUT", -5.0, "a number from 0.001 to"),
        ("QUEUE_TIMEOUT", float("inf"), "a number from 0.001 to"),
        ("BACKOFF", float("nan"), "a number from 0 to"),
        ("RETRIES", 64, "an integer from 0 to 20,"),
        ("KEEPALIVE", 0.0, "a number from 0.001 to"),
        ("MAX_TEXT_LENGTH", 0, "an integer from 1 to"),
        ("TIER1_MAX_ENTRIES", 0, "an integer from 1 to"),
        ("TIER1_MAX_BYTES", -1, "an integer from 1 to"),
        ("TOUCH_INTERVAL", -1.0, "a number from 0 to"),
        ("EVICT_OLDER_THAN_DAYS", 10**10, "an integer from 0 to 36,500,"),
        ("EVICT_MAX_ROWS", -1, "an integer from 0 to"),
        ("EVICT_MAX_BYTES", -1, "an integer from 0 to"),
        ("EVICT_BATCH", 0, "an integer from 1 to"),
        ("POOL_SIZE", "10", "an integer from 1 to"),
        ("POOL_SIZE", True, "an integer from 1 to"),
    ],
)
def test_an_impossible_number_is_an_error_naming_its_variable(name, value, rule):
    [(check_id, message)] = errors_with(**{name: value})
    assert check_id == "phonemes.E001"
    assert message.startswith(f"PHONEME_{name} must be {rule}")
    assert message.endswith(f"got {value!r}")


def test_a_url_the_client_refuses_is_an_error(settings):
    settings.PHONEME_URL = "ftp://example.org"
    assert [(e.id, e.obj) for e in check_limits()] == [("phonemes.E001", "PHONEME_URL")]
    assert "http(s) URL" in check_limits()[0].msg


def test_manage_py_refuses_to_start_with_one(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PHONEME_POOL_SIZE": "0",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "(phonemes.E001) PHONEME_POOL_SIZE must be an integer from 1" in done.stderr
    assert "Traceback" not in done.stderr
