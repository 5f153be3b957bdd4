"""A page that needs Redis while Redis does not answer: 503 with Retry-After, not a 500."""

import pytest
from django.test import Client

from tests.redis_servers import free_port


@pytest.fixture
def redis_gone(settings):
    """Every cache alias (the admin's login sessions, the store) at a port nothing listens on."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings.CACHES = {name: {**alias, "LOCATION": dead} for name, alias in settings.CACHES.items()}


@pytest.mark.django_db
def test_logging_in_to_the_admin_without_redis_is_a_503_to_retry(redis_gone, admin_user):
    client = Client(raise_request_exception=False)
    response = client.post("/admin/login/", {"username": "admin", "password": "password"})

    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert b"127.0.0.1" not in response.content


def test_a_page_that_needs_nothing_of_redis_still_answers(redis_gone):
    assert Client().get("/healthz").status_code == 200
