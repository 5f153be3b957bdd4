"""The library as the robot installs it: a fresh virtual environment with only
`pip install ./convstore` runs the README's example against Redis, and holds nothing of
Django, Celery or the database."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "convstore" / "README.md"
README_URL = "redis://127.0.0.1:6379/0"


def readme_example():
    """The README's whole-program example (the Python block after "After")."""
    text = README.read_text()
    after = text[text.index("\nAfter") :]
    return after[after.index("```python\n") + len("```python\n") : after.index("\n```\n")]


@pytest.mark.timeout(300)
def test_a_fresh_venv_with_only_the_library_runs_the_readme_example(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # A copy: building in the checkout would leave build/ and egg-info in it.
    source = shutil.copytree(ROOT / "convstore", tmp_path / "convstore")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        check=True,
        capture_output=True,
    )
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    )
    installed = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert installed >= {"convstore", "redis", "orjson", "lz4"}
    assert not installed & {"django", "django-redis", "celery", "psycopg", "opentelemetry-api"}

    example = readme_example()
    assert README_URL in example
    url = settings.CACHES["sessions"]["LOCATION"]
    program = example.replace(README_URL, url)
    run = subprocess.run([python, "-c", program], capture_output=True, text=True, cwd=tmp_path)

    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:2] == [
        "(1) Bạn nói: Xin chào",
        "{'LOOP_COUNT': 1} [(0, 'Xin chào'), (1, '(1) Bạn nói: Xin chào'), (2, 'hint')]",
    ]
