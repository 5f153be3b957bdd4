"""URL configuration: the admin at /admin/, JSON APIs under /api/, the root goes to the admin.

/i18n/setlang/ lets an operator switch the admin's language (English, Vietnamese).
"""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/phonemes/", include("phonemes.urls")),
    path("api/sessions/", include("sessions_app.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
