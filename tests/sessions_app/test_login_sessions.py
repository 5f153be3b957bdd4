"""Django's login sessions in Redis: JSON with Django's own contract, never pickle.

Whoever can write a pickle into Redis must not be able to run code in the web process.
"""

import pickle
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.sessions.backends.cache import SessionStore
from django.core.signing import JSONSerializer
from django.utils import timezone

pytestmark = pytest.mark.django_db
PASSWORD = "s3cret-pass"
EXECUTED = []


def _run_payload(marker):
    EXECUTED.append(marker)


class Payload:
    """Unpickling this calls _run_payload: what an attacker would plant."""

    def __reduce__(self):
        return (_run_payload, ("payload ran",))


@pytest.fixture
def admin_client(client):
    User.objects.create_superuser("operator", "op@example.org", PASSWORD)
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "operator", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    return client


def stored_values(redis_client):
    """Every value in the tests' Redis database, by key, whatever its type."""
    values = {}
    for key in redis_client.scan_iter():
        kind = redis_client.type(key)
        if kind == b"string":
            values[key] = [redis_client.get(key)]
        elif kind == b"hash":
            values[key] = list(redis_client.hgetall(key).values())
        elif kind == b"list":
            values[key] = redis_client.lrange(key, 0, -1)
        else:
            values[key] = list(redis_client.zrange(key, 0, -1) or redis_client.smembers(key))
    return values


def session_key_in_redis(client, redis_client):
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    [key] = [k for k in redis_client.scan_iter() if k.endswith(cookie.encode())]
    return key


def test_a_login_writes_no_pickle_only_json(admin_client, redis_client):
    values = stored_values(redis_client)
    key = session_key_in_redis(admin_client, redis_client)
    assert key in values
    pickled = [k for k, vs in values.items() if any(v.startswith(b"\x80") for v in vs)]
    assert pickled == []
    session = orjson.loads(redis_client.get(key))
    assert session["_auth_user_id"] == str(User.objects.get(username="operator").pk)
    assert admin_client.get("/admin/").status_code == 200


def test_a_pickle_planted_at_the_session_key_is_refused_never_run(admin_client, redis_client):
    payload = pickle.dumps(Payload())
    pickle.loads(payload)
    assert EXECUTED == ["payload ran"]  # the payload is live: unpickled, it runs
    EXECUTED.clear()
    redis_client.set(session_key_in_redis(admin_client, redis_client), payload)

    response = admin_client.get("/admin/")

    assert EXECUTED == []
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert response.wsgi_request.user.is_anonymous
    assert dict(response.wsgi_request.session) == {}


def test_session_data_round_trips(redis_client):
    expiry = timezone.now() + timedelta(hours=2)
    session = SessionStore()
    session.update({"_auth_user_id": "7", "cart": {"items": [1, 2], "note": "xin chào"}})
    session.set_expiry(expiry)
    session.save()

    loaded = SessionStore(session.session_key)

    assert loaded["_auth_user_id"] == "7"
    assert loaded["cart"] == {"items": [1, 2], "note": "xin chào"}
    assert loaded.get_expiry_date() == expiry


def test_messages_kept_in_the_session_round_trip(admin_client, redis_client, settings):
    settings.MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
    response = admin_client.post("/admin/auth/group/add/", {"name": "tutors"})
    assert response.status_code == 302
    stored = orjson.loads(redis_client.get(session_key_in_redis(admin_client, redis_client)))
    assert "tutors" in stored["_messages"]

    shown = admin_client.get(response["Location"])

    assert any("tutors" in str(m) for m in shown.context["messages"])


@pytest.mark.parametrize(
    "value",
    [datetime(2025, 3, 3, 8, 0, tzinfo=UTC), Decimal("1.10"), uuid.uuid4(), date(2025, 3, 3)],
    ids=["datetime", "Decimal", "UUID", "date"],
)
def test_a_value_json_cannot_hold_is_a_type_error_as_with_djangos_serializer(redis_client, value):
    name = type(value).__name__
    with pytest.raises(TypeError, match=f"Object of type {name} is not JSON serializable"):
        JSONSerializer().dumps({"when": value})  # Django's own session serializer
    session = SessionStore()
    session["when"] = value

    with pytest.raises(TypeError, match=f"Object of type {name} is not JSON serializable"):
        session.save()

    assert redis_client.dbsize() == 0


def test_login_sessions_keep_what_django_json_keeps(redis_client):
    session = SessionStore()
    session.update({"ids": (1, 2), "by_number": {3: "three"}, "price": "1.10"})
    session.save()

    loaded = SessionStore(session.session_key)

    assert dict(loaded) == {"ids": [1, 2], "by_number": {"3": "three"}, "price": "1.10"}


def test_the_conversation_store_still_writes_datetimes_as_strings(store):
    moment = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
    store.save({"conversation_id": "c1", "started": moment, "history": []})
    assert store.load("c1")["started"] == "2025-03-03T08:00:00+00:00"
