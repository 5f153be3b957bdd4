"""robotperf: fast, compact conversation sessions and a bounded phoneme similarity tool."""

from robotperf.celery import app as celery_app

__all__ = ("celery_app",)
