"""The phoneme cache admin through Django's test client: who may evict rows."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from phonemes.models import PhonemeCacheEntry
from tests.phonemes.test_services import make_entry, remaining

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:phonemes_phonemecacheentry_changelist")


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_phonemecacheentry", "change_phonemecacheentry"]
        )
    )
    client.force_login(user)
    return user


def test_evicting_needs_the_delete_permission(client, staff):
    entries = [make_entry(text, days_ago=1) for text in ("the cat sat", "a dog barked")]
    evict = {"action": "evict_selected", "_selected_action": [entries[0].pk]}

    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert b"evict_selected" not in page.content
    client.post(CHANGELIST, evict)
    assert remaining() == ["a dog barked", "the cat sat"]

    # With the permission, the same post evicts the row.
    staff.user_permissions.add(Permission.objects.get(codename="delete_phonemecacheentry"))
    assert b"evict_selected" in client.get(CHANGELIST).content
    client.post(CHANGELIST, evict)
    assert remaining() == ["a dog barked"]
    assert not PhonemeCacheEntry.objects.filter(pk=entries[0].pk).exists()
