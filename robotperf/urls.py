"""URL configuration: the probes /healthz and /readyz, /metrics for Prometheus, the admin at
/admin/, JSON APIs under /api/ (any other path there is a JSON 404), the root goes to the admin.

/i18n/setlang/ lets an operator switch the admin's language (English, Vietnamese).
"""

from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import RedirectView

from robotperf.views import healthz, metrics, readyz


@csrf_exempt  # it reads nothing: a POST to a wrong path gets the same JSON 404
def api_not_found(request):
    """Any other path under /api/ (``a%2Fb`` decoded into two segments, ``..`` resolved by the
    client): the robot service parses every answer there as JSON, a 404 included."""
    return JsonResponse({"error": f"no API at {request.path!r}"}, status=404)


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/phonemes/", include("phonemes.urls")),
    path("api/sessions/", include("sessions_app.urls")),
    re_path(r"^api/", api_not_found, name="api_not_found"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
