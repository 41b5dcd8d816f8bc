"""Saved configs as a user relies on them: the default one routes requests that name none, an archived one
never routes, and a header that is neither an object nor a saved config's name is refused."""

from __future__ import annotations

import secrets
from typing import Iterator

import httpx
import pytest

from tests.conftest import OPENAI_KEY, stored
from tests.harness import GatewayProcess

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def own_gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai) -> Iterator[GatewayProcess]:
    """A gateway of this module's own: a default config changes how every request without one routes."""
    providers = [stored("openai-test", "openai", "TEST_OPENAI_KEY", fake_openai[0].url + "/v1")]
    process = GatewayProcess(tmp_path_factory.mktemp("defaults") / "data", providers=providers,
                             env={"TEST_OPENAI_KEY": OPENAI_KEY})
    with process:
        yield process


@pytest.fixture
def admin(own_gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=own_gateway.v1, headers=own_gateway.headers(), timeout=20) as client:
        yield client
        for config in client.get("/configs").json()["data"]:
            client.delete(f"/configs/{config['slug']}")


def chat(admin: httpx.Client, **headers: str) -> httpx.Response:
    return admin.post("/chat/completions", json=BODY, headers=headers)


def save(admin: httpx.Client, config: dict, *, is_default: bool = False) -> dict:
    slug = f"cfg-{secrets.token_hex(3)}"
    created = admin.post("/configs", json={"name": slug, "slug": slug, "config": config, "is_default": is_default})
    assert created.status_code == 200, created.text
    return created.json()


def test_a_request_without_provider_or_config_is_refused(admin):
    response = chat(admin)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_provider"


def test_the_default_config_routes_a_request_that_names_none(admin):
    save(admin, {"provider": "@openai-test"}, is_default=True)
    response = chat(admin)
    assert response.status_code == 200, response.text
    assert response.headers["x-portkey-last-used-option-index"] == "config"
    assert response.headers["x-portkey-provider"] == "openai"


def test_a_config_in_the_header_wins_over_the_default(admin):
    save(admin, {"provider": "@nowhere"}, is_default=True)  # would fail if it applied
    response = chat(admin, **{"x-portkey-config": '{"provider": "@openai-test"}'})
    assert response.status_code == 200, response.text


def test_an_archived_default_config_does_not_route(admin):
    created = save(admin, {"provider": "@openai-test"}, is_default=True)
    assert admin.put(f"/configs/{created['slug']}", json={"status": "archived"}).status_code == 200
    response = chat(admin)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_provider"


def test_an_archived_config_named_in_the_header_is_refused(admin):
    created = save(admin, {"provider": "@openai-test"})
    assert chat(admin, **{"x-portkey-config": created["slug"]}).status_code == 200
    assert admin.put(f"/configs/{created['slug']}", json={"status": "archived"}).status_code == 200
    response = chat(admin, **{"x-portkey-config": created["slug"]})
    assert response.status_code == 400
    assert response.headers["x-portkey-gateway-exception"] == "true"
    assert "archived" in response.json()["error"]["message"]


def test_a_json_array_is_not_a_saved_config_id(admin):
    response = chat(admin, **{"x-portkey-config": "[1,2]"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "x-portkey-config must be a JSON object or the id or slug of a saved config")


def test_no_option_index_without_a_config(admin):
    response = chat(admin, **{"x-portkey-provider": "@openai-test"})
    assert response.status_code == 200
    assert "x-portkey-last-used-option-index" not in response.headers
