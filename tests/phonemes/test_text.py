"""The text rules' own room: the language-code rule, and who may import the reference server."""

import ast
from pathlib import Path

import pytest

import phonemes
from phonemes.text import check_lang

PACKAGE = Path(phonemes.__file__).parent


def imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


@pytest.mark.parametrize("lang", ["en", "vi", "en-us", "cmn-latn-pinyin"])
def test_accepts_language_codes(lang):
    check_lang(lang)


@pytest.mark.parametrize("lang", ["EN", "e", "-v en", "en;", "", None, 1])
def test_refuses_anything_else(lang):
    with pytest.raises(ValueError, match="language code"):
        check_lang(lang)


def test_only_the_command_that_runs_it_imports_the_reference_server():
    importers = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "phonemes.server" in set(imported_modules(path))
    }
    assert importers == {"management/commands/run_phoneme_server.py"}


def test_imports_nothing_from_the_sessions_app():
    for path in PACKAGE.rglob("*.py"):
        assert not any(
            name == "sessions_app" or name.startswith("sessions_app.")
            for name in imported_modules(path)
        ), path
