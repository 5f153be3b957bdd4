"""The static files middleware keeps the ASGI stack async: Django adapts (runs in a thread)
every sync-only middleware it meets, and says so in its debug log."""

import logging

from django.core.handlers.asgi import ASGIHandler


def test_no_middleware_takes_the_async_stack_through_a_thread(settings, caplog):
    assert "robotperf.static.StaticFilesMiddleware" in settings.MIDDLEWARE
    settings.DEBUG = True  # Django logs its adaptations only then
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        ASGIHandler()
    adapted = [r.getMessage() for r in caplog.records if "adapted for middleware" in r.getMessage()]
    assert adapted == []
