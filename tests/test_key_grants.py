"""A gateway key cannot grant beyond itself: not past its own expiry; and a provider id in
allowed_providers means that provider with the caller's own credential, never every stored slug of it."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone
from typing import Iterator

import httpx
import pytest


def later(**delta: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(**delta)).isoformat()


@pytest.fixture
def admin(gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.v1, headers=gateway.headers(), timeout=20) as client:
        yield client


def new_key(admin: httpx.Client, **body) -> tuple[str, str]:
    created = admin.post("/api-keys", json={"name": f"k-{secrets.token_hex(3)}", **body})
    assert created.status_code == 200, created.text
    return created.json()["id"], created.json()["key"]


def as_key(gateway, token: str) -> httpx.Client:
    return httpx.Client(base_url=gateway.v1, headers={"x-portkey-api-key": token}, timeout=20)


def forbidden(response: httpx.Response) -> str:
    assert response.status_code == 403, response.text
    assert response.headers["x-portkey-gateway-exception"] == "true"
    return response.json()["error"]["message"]


def test_a_key_cannot_create_a_key_that_outlives_it(admin, gateway):
    _, token = new_key(admin, scopes=["keys.write", "keys.read", "inference"], expires_at=later(hours=1))
    with as_key(gateway, token) as manager:
        for body in ({}, {"expires_at": None}, {"expires_at": later(hours=2)}):
            assert "must expire no later" in forbidden(manager.post("/api-keys", json={"name": "child", **body}))
        assert manager.post("/api-keys", json={"name": "child", "expires_at": later(minutes=30)}).status_code == 200


def test_a_key_cannot_remove_or_extend_its_own_expiry(admin, gateway):
    key_id, token = new_key(admin, scopes=["keys.write", "keys.read"], expires_at=later(hours=1))
    with as_key(gateway, token) as manager:
        for expiry in (None, later(days=365)):
            assert "must expire no later" in forbidden(manager.put(f"/api-keys/{key_id}", json={"expires_at": expiry}))
        assert manager.put(f"/api-keys/{key_id}", json={"name": "renamed"}).status_code == 200
    assert admin.get(f"/api-keys/{key_id}").json()["expires_at"] is not None


def test_a_key_cannot_touch_a_key_that_outlives_it(admin, gateway):
    lasting_id, _ = new_key(admin, scopes=["inference"])
    _, token = new_key(admin, scopes=["keys.write", "keys.read", "inference"], expires_at=later(hours=1))
    with as_key(gateway, token) as manager:
        forbidden(manager.post(f"/api-keys/{lasting_id}/rotate"))
        forbidden(manager.put(f"/api-keys/{lasting_id}", json={"expires_at": later(minutes=5)}))


def test_a_provider_id_does_not_unlock_stored_providers_of_that_kind(admin, gateway):
    _, id_only = new_key(admin, allowed_providers=["replicate"])
    _, with_slug = new_key(admin, allowed_providers=["@replicate-test"])
    stored = {"x-portkey-provider": "@replicate-test"}
    assert "may not use provider @replicate-test" in forbidden(
        httpx.get(gateway.v1 + "/account", headers={"x-portkey-api-key": id_only, **stored}, timeout=20))
    assert httpx.get(gateway.v1 + "/account", headers={"x-portkey-api-key": with_slug, **stored}, timeout=20).status_code == 200
    # The id still allows the provider with the caller's own credential: refused upstream, not by the gateway.
    own = httpx.get(gateway.v1 + "/account", timeout=20, headers={"x-portkey-api-key": id_only, "x-portkey-provider": "replicate",
                                                                  "authorization": "Bearer r8_mine"})
    assert own.status_code == 502, own.text
    assert "may not use provider openai" in forbidden(
        httpx.get(gateway.v1 + "/models", headers={"x-portkey-api-key": with_slug, "x-portkey-provider": "openai"},
                  timeout=20))
