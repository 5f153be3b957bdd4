"""`manage.py demo_api_token`: the token `make run` gives the session API, printed with its
address; generated once and kept, or API_TOKEN's."""

import stat
from io import StringIO

from django.core.management import call_command


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("demo_api_token", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_a_token_is_generated_once_kept_and_printed_with_the_address(tmp_path, monkeypatch):
    monkeypatch.delenv("API_TOKEN", raising=False)
    kept = tmp_path / "api-token"
    token, said = run("--file", str(kept))
    assert len(token) >= 32
    assert kept.read_text().strip() == token
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert "GET http://127.0.0.1:8000/api/sessions/<conversation_id>" in said
    assert f'"Authorization: Bearer {token}"' in said
    assert "generated now" in said
    again, said = run("--file", str(kept))
    assert again == token
    assert f"kept in {kept}" in said


def test_api_token_from_the_environment_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("API_TOKEN", "chosen-token")
    kept = tmp_path / "api-token"
    token, said = run("--file", str(kept))
    assert token == "chosen-token"
    assert "(from API_TOKEN)" in said
    assert not kept.exists()
