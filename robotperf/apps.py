from django.apps import AppConfig
from django.core import checks


class RobotperfConfig(AppConfig):
    """The project itself, as an app: its project-wide system checks."""

    name = "robotperf"
    verbose_name = "robotperf"

    def ready(self):
        from robotperf.checks import check_production_settings

        checks.register(check_production_settings, checks.Tags.security)
