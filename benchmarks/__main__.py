"""Runs every benchmark section and rewrites docs/PERFORMANCE.md with their figures.

Usage: python -m benchmarks [section ...]
(sections: store, slowlog, compression, async_store, cycle, compaction, admin, phonemes)
"""

import importlib
import os
import platform
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
    "compaction",
    "admin",
    "phonemes",
]
OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "PERFORMANCE.md"


def main(argv):
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    names = argv or SECTIONS
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    parts = [
        "# Performance\n",
        "Produced by `make bench` (`python -m benchmarks`); every ratio compares figures measured "
        "in the same run, on the same Redis, so a slow or noisy machine moves both sides.\n",
        f"Run: {started}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{platform.machine()}.\n",
    ]
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"running benchmarks.{name} ...", file=sys.stderr, flush=True)
        parts.append(module.run())
    OUTPUT.write_text("\n".join(parts))
    print(f"wrote {OUTPUT}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
