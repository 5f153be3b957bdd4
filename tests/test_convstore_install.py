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
EXAMPLE = """
import asyncio, sys
from convstore import AsyncConversationStore, StaleRevision

async def main(url):
    store = AsyncConversationStore.from_url(url, ttl=3600)
    await store.save({"conversation_id": "robot-1", "record": {}, "history": []})
    session = await store.load("robot-1", window=20)
    await store.append_turns("robot-1", [{"role": "user", "content": "Xin chào"}])
    await store.update_state("robot-1", {"record": {"LOOP_COUNT": [1]}}, session["_rev"])
    try:
        await store.update_state("robot-1", {"record": {}}, session["_rev"])
    except StaleRevision:
        print("stale refused")
    loaded = await store.load("robot-1", window=None)
    await store.aclose()
    print(loaded["record"], [turn["content"] for turn in loaded["history"]])

asyncio.run(main(sys.argv[1]))
"""


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

    url = settings.CACHES["sessions"]["LOCATION"]
    run = subprocess.run([python, "-c", EXAMPLE, url], capture_output=True, text=True, cwd=tmp_path)

    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:2] == ["stale refused", "{'LOOP_COUNT': [1]} ['Xin chào']"]
