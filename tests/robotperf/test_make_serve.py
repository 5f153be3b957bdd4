"""`make serve` stops before any set-up when a secret is missing, naming it and saying how to
set one (its first prerequisite, serve-env, run alone here: it starts nothing)."""

import os
import subprocess

import pytest

from tests.robotperf.production import ROOT


def serve_env(**variables):
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "API_TOKEN", "MAKEFLAGS"}}
    return subprocess.run(
        ["make", "--no-print-directory", "serve-env"],
        cwd=ROOT, env={**env, **variables}, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({}, "SECRET_KEY and API_TOKEN must be set"),
        ({"API_TOKEN": "a-token"}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": "a-key"}, "API_TOKEN must be set"),
    ],
)
def test_a_missing_secret_stops_make_serve_naming_it(variables, named):
    done = serve_env(**variables)
    assert done.returncode != 0
    assert f"make serve: {named} (DEBUG is off: no default)." in done.stderr
    assert "export SECRET_KEY=" in done.stderr


def test_with_both_secrets_it_goes_on():
    assert serve_env(SECRET_KEY="a-key", API_TOKEN="a-token").returncode == 0


def test_serve_checks_the_secrets_before_anything_else():
    makefile = (ROOT / "Makefile").read_text()
    assert "\nserve: serve-env venv\n" in makefile
