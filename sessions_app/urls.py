"""URLs of the conversation store's JSON API, included under /api/sessions/."""

from django.urls import path

from sessions_app import api

app_name = "sessions_api"
urlpatterns = [
    path("<str:conversation_id>", api.session, name="session"),
    path("<str:conversation_id>/turns", api.turns, name="turns"),
]
