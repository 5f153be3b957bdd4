"""Benchmark settings: a Redis database and an SQLite file of the benchmarks' own."""

import os

os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
os.environ.setdefault("DATABASE_URL", "sqlite:///var/bench.sqlite3")
os.environ.pop("CELERY_BROKER_URL", None)
os.environ.pop("CELERY_RESULT_BACKEND", None)
os.environ.setdefault("LOG_LEVEL", "WARNING")

from robotperf.settings import *  # noqa: F403
