"""`manage.py create_demo_superuser` creates one superuser and prints its password once."""

import re
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command


def run(*args):
    out = StringIO()
    call_command("create_demo_superuser", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_creates_a_superuser_whose_printed_password_works():
    printed = run("--username", "ops")
    password = re.search(r"password (\S+) \(shown once\)", printed).group(1)
    user = authenticate(username="ops", password=password)
    assert user is not None
    assert user.is_superuser


@pytest.mark.django_db
def test_second_run_changes_nothing_and_prints_no_password():
    first = run()
    second = run()
    assert "password" in first
    assert "exists already" in second
    assert re.search(r"with password", second) is None
    assert get_user_model().objects.count() == 1


@pytest.mark.django_db
def test_an_empty_username_is_a_command_error():
    with pytest.raises(CommandError, match="username"):
        run("--username", " ")
    assert not get_user_model().objects.exists()
