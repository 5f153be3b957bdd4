from django.apps import AppConfig
from django.core import checks
from django.utils.translation import gettext_lazy as _

from sessions_app.checks import check_limits, check_no_cache_pickles


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = _("Conversation sessions")

    def ready(self):
        from convstore.observe import add_observer
        from sessions_app import slow_calls
        from sessions_app.metrics import observe_call

        checks.register(check_no_cache_pickles, checks.Tags.caches, checks.Tags.security)
        checks.register(check_limits)
        # Every store call of this process is timed for /metrics.
        add_observer(observe_call)
        # Every process (web, worker, beat, commands) logs its slow store calls.
        slow_calls.enable_from_settings()
