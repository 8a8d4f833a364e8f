"""The rentals API: provision with Idempotency-Key, list, read, scale, stop, start, terminate."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from billing.models import ApiKey
from pods import actions, engine
from pods.models import Rental, State
from tests.accounts_and_billing import make_user
from tests.pods_world import SSH_KEY, World, a100, fund

pytestmark = pytest.mark.django_db


@pytest.fixture
def api_key(user: Any) -> str:
    return ApiKey.issue(user, "tests")[1]


def call(method: str, path: str, key: str, body: Any = None, idem: str | None = None) -> Any:
    headers = {"HTTP_X_API_KEY": key}
    if idem:
        headers["HTTP_IDEMPOTENCY_KEY"] = idem
    client = Client()
    return getattr(client, method)(f"/api/v2{path}", data=json.dumps(body) if body is not None else None, content_type="application/json", **headers)


def body(**changes: Any) -> dict[str, Any]:
    return {"offer_id": a100().pk, "name": "api-pod", "ssh_public_key": SSH_KEY, **changes}


def test_provision_makes_a_pod_and_replaying_the_key_returns_it(world: World, user: Any, api_key: str) -> None:
    fund(user)
    first = call("post", "/rentals/provision", api_key, body(), idem="key-00001")
    assert first.status_code == 201, first.content
    again = call("post", "/rentals/provision", api_key, body(), idem="key-00001")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert Rental.objects.count() == 1
    assert first.json()["state"] == "provisioning" and first.json()["events"][-1]["to_state"] == "provisioning"


def test_the_same_key_with_another_body_is_409(world: World, user: Any, api_key: str) -> None:
    fund(user)
    call("post", "/rentals/provision", api_key, body(), idem="key-00002")
    response = call("post", "/rentals/provision", api_key, body(name="other"), idem="key-00002")
    assert response.status_code == 409
    assert response.json()["errors"] == [{"field": "Idempotency-Key", "reason": "this Idempotency-Key was used for another request"}]


def test_provision_without_an_idempotency_key_is_422_naming_it(world: World, user: Any, api_key: str) -> None:
    response = call("post", "/rentals/provision", api_key, body())
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "Idempotency-Key"


@pytest.mark.parametrize(("changes", "field"), [({"ssh_public_key": "nope"}, "ssh_public_key"), ({"name": "Bad!"}, "name"), ({"gpu_count": 3}, "gpu_count"), ({"offer_id": 0}, "offer_id"), ({"template": "dos"}, "template")])
def test_bad_input_is_422_naming_the_field(world: World, user: Any, api_key: str, changes: dict[str, Any], field: str) -> None:
    fund(user)
    response = call("post", "/rentals/provision", api_key, body(**changes), idem="key-bad-input")
    assert response.status_code == 422
    assert response.json()["error"] == "invalid parameters" and [e["field"] for e in response.json()["errors"]] == [field]
    assert not Rental.objects.exists()


def test_without_balance_it_is_402_with_the_reason(world: World, user: Any, api_key: str) -> None:
    response = call("post", "/rentals/provision", api_key, body(), idem="key-00003")
    assert response.status_code == 402 and response.json()["errors"][0]["field"] == "balance"


def test_the_plan_limit_is_403(world: World, user: Any, api_key: str) -> None:
    fund(user, "500")
    call("post", "/rentals/provision", api_key, body(), idem="key-00004")
    response = call("post", "/rentals/provision", api_key, body(), idem="key-00005")
    assert response.status_code == 403 and "Free plan allows 1 pod" in response.json()["errors"][0]["reason"]


def test_the_whole_life_through_the_api(world: World, user: Any, api_key: str) -> None:
    fund(user)
    rental_id = call("post", "/rentals/provision", api_key, body(), idem="key-00006").json()["id"]
    engine.tick()
    world.boot()
    engine.tick()
    rental = Rental.objects.get(pk=rental_id)
    actions.activate(rental, rental.activation_nonce)
    got = call("get", f"/rentals/{rental_id}", api_key).json()
    assert got["state"] == "running" and got["ssh_command"].startswith("ssh root@")
    assert [r["id"] for r in call("get", "/rentals", api_key).json()["items"]] == [rental_id]
    assert call("post", f"/rentals/{rental_id}/stop", api_key).json()["state"] == "stopped"
    assert call("post", f"/rentals/{rental_id}/stop", api_key).status_code == 409
    assert call("post", f"/rentals/{rental_id}/start", api_key).json()["state"] == "running"
    scaled = call("post", f"/rentals/{rental_id}/scale", api_key, {"gpu_count": 2})
    assert scaled.status_code == 200 and scaled.json()["gpu_count"] == 2 and scaled.json()["state"] == "provisioning"
    ended = call("delete", f"/rentals/{rental_id}", api_key).json()
    assert ended["state"] == "terminated" and ended["final_cost"] is not None


@pytest.mark.parametrize(("method", "path"), [("get", ""), ("post", "/stop"), ("post", "/start"), ("post", "/scale"), ("delete", "")])
def test_another_users_pod_is_404_on_every_call(world: World, user: Any, api_key: str, method: str, path: str) -> None:
    fund(user)
    rental_id = call("post", "/rentals/provision", api_key, body(), idem="key-00007").json()["id"]
    eve_key = ApiKey.issue(make_user("eve@example.com"), "eve")[1]
    response = call(method, f"/rentals/{rental_id}{path}", eve_key, {"gpu_count": 2} if path == "/scale" else None)
    assert response.status_code == 404 and response.json()["error"] == "not found"
    assert call("get", "/rentals", eve_key).json()["items"] == []
    assert Rental.objects.get(pk=rental_id).state == State.PROVISIONING


def test_a_signed_in_session_works_too(world: World, user: Any, member: Client) -> None:
    assert member.get("/api/v2/rentals").status_code == 200
    assert Client().get("/api/v2/rentals").status_code == 401


def test_the_openapi_schema_documents_the_rentals_with_examples(db: None) -> None:
    schema = Client().get("/api/v2/openapi.json").json()
    for path in ("/api/v2/rentals/provision", "/api/v2/rentals", "/api/v2/rentals/{rental_id}", "/api/v2/rentals/{rental_id}/scale"):
        assert path in schema["paths"]
    assert schema["components"]["schemas"]["ProvisionIn"]["examples"][0]["name"] == "llama-finetune"
    assert "409" in schema["paths"]["/api/v2/rentals/provision"]["post"]["responses"]
