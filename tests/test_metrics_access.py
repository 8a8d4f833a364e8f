"""/metrics is for the monitoring system: a bearer token, this machine or staff; and cheap to scrape."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from web import metrics

pytestmark = pytest.mark.django_db
REMOTE = "203.0.113.7"  # TEST-NET-3: somewhere on the internet
TOKEN = "metrics-token-for-tests-6b1f0c2e9a"


def scrape(**extra: Any) -> Any:
    return Client(REMOTE_ADDR=extra.pop("REMOTE_ADDR", REMOTE)).get("/metrics", **extra)


def test_a_scrape_from_elsewhere_without_a_token_is_refused_and_shows_nothing() -> None:
    response = scrape()
    assert response.status_code == 403 and b"gpubroker_" not in response.content


def test_a_scrape_from_this_machine_is_allowed_when_no_token_is_set() -> None:
    assert scrape(REMOTE_ADDR="127.0.0.1").status_code == 200
    assert scrape(REMOTE_ADDR="::1").status_code == 200


def test_a_request_relayed_by_a_proxy_on_this_machine_is_not_taken_as_local() -> None:
    assert scrape(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=REMOTE).status_code == 403


def test_with_a_token_set_only_that_token_scrapes(settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    assert scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}").status_code == 403
    assert scrape(REMOTE_ADDR="127.0.0.1").status_code == 403


def test_signed_in_staff_may_read_the_metrics_from_anywhere() -> None:
    client = Client(REMOTE_ADDR=REMOTE)
    client.force_login(get_user_model().objects.create_user("ops", "ops@example.com", "pw", is_staff=True))
    assert client.get("/metrics").status_code == 200
    ordinary = Client(REMOTE_ADDR=REMOTE)
    ordinary.force_login(get_user_model().objects.create_user("ada", "ada@example.com", "pw"))
    assert ordinary.get("/metrics").status_code == 403


def test_scrapes_reuse_one_redis_connection_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    metrics._redis.cache_clear()
    pools: list[object] = []
    real_init = redis.ConnectionPool.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        pools.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(redis.ConnectionPool, "__init__", counting_init)
    for _ in range(3):
        assert scrape(REMOTE_ADDR="127.0.0.1").status_code == 200
    assert len(pools) == 1
