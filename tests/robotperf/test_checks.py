"""With DEBUG off, SECRET_KEY, ALLOWED_HOSTS and API_TOKEN must come from the environment (the
error names the one missing), and `check --deploy` leaves no warning OPERATIONS.md does not
explain."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.checks import run_checks

from tests.robotperf.production import HTTPS, explained_warning_ids, manage, production_env
from tests.robotperf.production import warning_ids as ids_in


def production_errors():
    return [(e.id, e.obj, e.msg) for e in run_checks() if e.id == "robotperf.E003"]


@pytest.fixture
def production(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = "a-test-secret-key-" + "x" * 40
    settings.ALLOWED_HOSTS = ["robotperf.example"]
    settings.ROBOTPERF_API = {"TOKEN": "a-test-token"}
    return settings


def test_a_complete_production_configuration_passes(production):
    assert production_errors() == []


@pytest.mark.parametrize(
    ("name", "unset"),
    [
        ("SECRET_KEY", {"SECRET_KEY": ""}),
        ("ALLOWED_HOSTS", {"ALLOWED_HOSTS": []}),
        ("API_TOKEN", {"ROBOTPERF_API": {"TOKEN": ""}}),
    ],
)
def test_each_missing_variable_is_an_error_naming_it(production, name, unset):
    for setting, value in unset.items():
        setattr(production, setting, value)
    assert production_errors() == [
        ("robotperf.E003", name, f"{name} must be set when DEBUG is off")
    ]


def test_debug_needs_none_of_them(production):
    production.DEBUG = True
    production.SECRET_KEY = ""
    production.ALLOWED_HOSTS = []
    production.ROBOTPERF_API = {"TOKEN": ""}
    assert production_errors() == []


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """`manage.py check` in three production environments, run at once (each is a new process):
    without the secrets, as `make serve` runs it, and behind HTTPS."""
    var = tmp_path_factory.mktemp("var")
    runs = {
        "missing": (production_env(var, SECRET_KEY="", API_TOKEN="", ALLOWED_HOSTS=""), "check"),
        "serve": (production_env(var), "check", "--deploy", "--fail-level", "ERROR"),
        "https": (production_env(var, **HTTPS), "check", "--deploy"),
    }
    with ThreadPoolExecutor(len(runs)) as pool:
        done = {name: pool.submit(manage, *args) for name, args in runs.items()}
        return {name: future.result() for name, future in done.items()}


def test_manage_py_refuses_to_start_without_them(checked):
    done = checked["missing"]
    assert done.returncode == 1
    for name in ("SECRET_KEY", "ALLOWED_HOSTS", "API_TOKEN"):
        assert f"(robotperf.E003) {name} must be set when DEBUG is off" in done.stderr


def test_check_deploy_leaves_only_the_warnings_operations_explains(checked):
    """`make serve`'s environment (plain HTTP on loopback): each warning left is one that
    docs/OPERATIONS.md explains, with the variable that turns it off behind HTTPS."""
    done = checked["serve"]
    assert done.returncode == 0, done.stderr
    found = ids_in(done.stderr)
    assert found, "the HTTPS settings are off by default: check --deploy warns about them"
    assert found <= explained_warning_ids()


def test_check_deploy_is_silent_behind_https(checked):
    done = checked["https"]
    assert done.returncode == 0, done.stderr
    assert ids_in(done.stderr + done.stdout) == set()
    assert "System check identified no issues" in done.stdout
