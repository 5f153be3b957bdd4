"""URLs of the phoneme similarity API, included under /api/phonemes/."""

from django.urls import path

from phonemes import api

app_name = "phonemes"
urlpatterns = [path("similarity", api.similarity, name="similarity")]
