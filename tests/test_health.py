"""/health reports every dependency: 200 when all are up, 503 naming what is down; the details
(backends, latency, why) to staff only."""

from __future__ import annotations

from collections.abc import Iterator

import corecalc
import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

UNREACHABLE_REDIS = "redis://:health-test-password@127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def client(db: None) -> Iterator[Client]:
    """Signed in as staff: the checks' details are for operators."""
    staff = get_user_model().objects.create_user("ops", "ops@example.com", "pw", is_staff=True)
    operator = Client()
    operator.force_login(staff)
    yield operator


@pytest.mark.django_db(transaction=True)  # the view closes connections as Channels code does
def test_it_is_up_on_postgres_and_redis(client: Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["down"] == []
    assert body["corecalc"] == corecalc.__version__
    assert {name: check["backend"] for name, check in body["checks"].items()} == {
        "database": "postgresql",
        "cache": "redis",
        "channel_layer": "redis",
    }
    assert all(check["ok"] for check in body["checks"].values())
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db(transaction=True)  # the view closes connections as Channels code does
def test_it_names_redis_when_the_cache_is_unreachable(client: Client) -> None:
    broken_cache = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": UNREACHABLE_REDIS,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    with override_settings(CACHES=broken_cache):
        response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["down"] == ["cache (redis)"]
    assert "redis unreachable" in body["checks"]["cache"]["error"]
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.django_db(transaction=True)  # the view closes connections as Channels code does
def test_it_names_redis_when_the_channel_layer_is_unreachable(client: Client) -> None:
    broken_layer = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [UNREACHABLE_REDIS]}}}
    with override_settings(CHANNEL_LAYERS=broken_layer):
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["down"] == ["channel_layer (redis)"]


@pytest.mark.django_db(transaction=True)  # the view closes connections as Channels code does
def test_anyone_else_sees_only_which_components_are_up_never_hosts_or_error_text(caplog: pytest.LogCaptureFixture) -> None:
    broken_cache = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": UNREACHABLE_REDIS, "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5}}}
    with override_settings(CACHES=broken_cache):
        response = Client().get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "down", "checks": {"database": {"ok": True}, "cache": {"ok": False}, "channel_layer": {"ok": True}}, "down": ["cache"]}
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name == "gpubroker.health")
    assert "cache is down" in logged and "health-test-password" not in logged


def test_it_answers_only_get(client: Client) -> None:
    assert client.post("/health").status_code == 405


@pytest.mark.django_db(transaction=True)  # the view closes connections as Channels code does
def test_a_signed_in_caller_still_gets_an_answer_when_the_session_cannot_be_read(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.contrib.auth import middleware
    from django.db import OperationalError

    async def unreadable(request: object) -> object:
        raise OperationalError("session store unreachable")

    monkeypatch.setattr(middleware, "auser", unreadable)
    response = client.get("/health")
    assert response.status_code == 200 and set(response.json()) == {"status", "checks", "down"}
