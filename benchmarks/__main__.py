"""Runs benchmark sections and writes their figures into docs/PERFORMANCE.md.

Usage: python -m benchmarks [section ...]
(sections: store, slowlog, compression, async_store, cycle, cluster, compaction, admin,
phonemes, serve; none: all)

Each section's figures sit between markers of its own in the file, with the time of the run
that made them: running some sections replaces theirs and keeps the others'.
"""

import importlib
import os
import platform
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

import django

SECTIONS = [
    "store",
    "slowlog",
    "compression",
    "async_store",
    "cycle",
    "cluster",
    "compaction",
    "admin",
    "phonemes",
    "serve",
]
OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "PERFORMANCE.md"
HEADER = (
    "# Performance\n\n"
    "Produced by `make bench` (`python -m benchmarks`, or `python -m benchmarks SECTION ...` for "
    "some sections); every ratio compares figures measured in the same run, on the same Redis, "
    "so a slow or noisy machine moves both sides. Each section says when it was run.\n"
)


def _marked(name, text):
    return f"<!-- section: {name} -->\n{text.rstrip()}\n<!-- end of section: {name} -->\n"


def _sections(document):
    """{name: marked text} of the sections in ``document``."""
    found = re.finditer(
        r"<!-- section: (\w+) -->\n.*?<!-- end of section: \1 -->\n", document, re.DOTALL
    )
    return {match[1]: match[0] for match in found}


def main(argv):
    unknown = sorted(set(argv) - set(SECTIONS))
    if unknown:
        sys.exit(f"unknown section(s): {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    kept = _sections(OUTPUT.read_text()) if OUTPUT.exists() else {}
    for name in argv or SECTIONS:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"running benchmarks.{name} ...", file=sys.stderr, flush=True)
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        figures = module.run()
        machine = f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}"
        kept[name] = _marked(name, f"{figures.rstrip()}\n\n_Run: {started}, {machine}._")
        ordered = [kept[section] for section in SECTIONS if section in kept]
        OUTPUT.write_text("\n".join([HEADER, *ordered]))
    print(f"wrote {OUTPUT}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
