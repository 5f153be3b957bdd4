"""Probes for a load balancer or an orchestrator, without authentication: they say only whether
this process and the services it needs answer, and how fast (see docs/OPERATIONS.md).

Both are async views, so a slow readiness check never holds a thread the sync views need.
"""

from asgiref.sync import sync_to_async
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

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
