from django.apps import AppConfig
from django.core import checks


class RobotperfConfig(AppConfig):
    """The project itself, as an app: its project-wide system checks, its Celery metrics and
    the OpenTelemetry exporter of every process (web, worker, beat, commands)."""

    name = "robotperf"
    verbose_name = "robotperf"

    def ready(self):
        from robotperf.checks import check_metrics_settings, check_production_settings
        from robotperf.metrics import connect_celery_signals
        from robotperf.telemetry import configure_tracing

        checks.register(check_production_settings, checks.Tags.security)
        checks.register(check_metrics_settings, checks.Tags.security)
        connect_celery_signals()
        configure_tracing()
