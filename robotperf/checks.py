"""Project-wide system checks: with DEBUG off, the variables a deployment must set; who may
read /metrics.

Settings give SECRET_KEY, ALLOWED_HOSTS and API_TOKEN a development default only while DEBUG is
on; without one, a server would answer 400 to every host, or refuse the robot's API. A check
error names the variable, so `manage.py check`, migrate and `make serve` stop before serving.
"""

import ipaddress

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

HINT = "set it in the environment (docs/OPERATIONS.md, Deploying)"


def check_production_settings(app_configs=None, **kwargs):
    """robotperf.E003 for each of SECRET_KEY, ALLOWED_HOSTS, API_TOKEN missing with DEBUG off."""
    if settings.DEBUG:
        return []
    return [
        checks.Error(
            f"{name} must be set when DEBUG is off", hint=HINT, obj=name, id="robotperf.E003"
        )
        for name in missing_production_settings()
    ]


def missing_production_settings():
    missing = []
    try:
        settings.SECRET_KEY  # noqa: B018 - Django raises on an empty one
    except ImproperlyConfigured:
        missing.append("SECRET_KEY")
    if not any(settings.ALLOWED_HOSTS):
        missing.append("ALLOWED_HOSTS")
    if not settings.ROBOTPERF_API["TOKEN"]:
        missing.append("API_TOKEN")
    return missing


def check_metrics_settings(app_configs=None, **kwargs):
    """robotperf.E004 for each address of METRICS_ALLOWED_NETWORKS that is no network."""
    errors = []
    for spelled in settings.ROBOTPERF_METRICS["ALLOWED_NETWORKS"]:
        try:
            ipaddress.ip_network(spelled, strict=False)
        except ValueError as e:
            errors.append(
                checks.Error(
                    f"METRICS_ALLOWED_NETWORKS: {e}",
                    hint="addresses or networks, comma-separated, e.g. 127.0.0.0/8,::1,10.0.0.0/8",
                    obj="METRICS_ALLOWED_NETWORKS",
                    id="robotperf.E004",
                )
            )
    return errors
