"""URL configuration: the admin at /admin/, JSON APIs under /api/, the root goes to the admin."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/phonemes/", include("phonemes.urls")),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
