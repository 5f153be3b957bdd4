from django.apps import AppConfig
from django.core import checks
from django.utils.translation import gettext_lazy as _

from sessions_app.checks import check_limits, check_no_cache_pickles


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = _("Conversation sessions")

    def ready(self):
        checks.register(check_no_cache_pickles, checks.Tags.caches, checks.Tags.security)
        checks.register(check_limits)
        # Every process (web, worker, beat, commands) logs its slow store calls.
        from sessions_app import slow_calls

        slow_calls.enable_from_settings()
