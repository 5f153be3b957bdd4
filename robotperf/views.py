"""Probes for a load balancer or an orchestrator, without authentication: they say only whether
this process and the services it needs answer, and how fast (see docs/OPERATIONS.md); and the
metrics for a Prometheus scraper, to the token or the networks allowed.

The probes are async views, so a slow readiness check never holds a thread the sync views need.
"""

from asgiref.sync import sync_to_async
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from robotperf import metrics as project_metrics
from robotperf.health import readiness


@never_cache
@require_safe
async def healthz(request):
    """The process answers: 200, whatever the services behind it do."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
async def readyz(request):
    """200 when every service answers, else 503; each check's result and latency either way."""
    report = await sync_to_async(readiness, thread_sensitive=False)()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)


@never_cache
@require_safe
def metrics(request):
    """Prometheus's text format; 403 unless the token or the caller's network is allowed."""
    if not project_metrics.allowed(request):
        return HttpResponse(
            "metrics: send the METRICS_TOKEN as a bearer token, or scrape from an address in "
            "METRICS_ALLOWED_NETWORKS\n",
            status=403,
            content_type="text/plain",
        )
    body, content_type = project_metrics.exposition(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)
