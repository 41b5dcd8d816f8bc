"""The real ``portkey-ai`` SDK's admin resources against the gateway: what Portkey users already run.

``Portkey(api_key=<gateway admin key>, base_url=<gateway>/v1)``, then ``virtual_keys``, ``api_keys``,
``configs``, ``integrations`` and ``providers`` create / list / retrieve / update / delete, parsed by the
SDK's own pydantic response types (portkey-ai 2.3.4).
"""

from __future__ import annotations

import secrets
from typing import Iterator

import httpx
import pytest
from portkey_ai import Portkey
from portkey_ai.api_resources.exceptions import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)

from tests.conftest import REPLICATE_TOKEN
from tests.harness import GatewayProcess

SECRET = "cp-test-sdk-secret-0099"


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("sdk-admin") / "data") as process:
        yield process


@pytest.fixture
def portkey(control: GatewayProcess) -> Portkey:
    return Portkey(api_key=control.admin_key, base_url=control.v1)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def test_virtual_keys(portkey, control, fake_replicate):
    server, _ = fake_replicate
    created = portkey.virtual_keys.create(name="Replicate", provider="replicate", key=REPLICATE_TOKEN,
                                          note="via sdk", custom_host=server.url + "/v1")
    slug = created.slug
    assert created.id == slug and created.object == "virtual-key"
    listed = portkey.virtual_keys.list()
    assert listed.object == "list" and slug in [item["slug"] for item in listed.data]
    retrieved = portkey.virtual_keys.retrieve(slug=slug)
    assert (retrieved.name, retrieved.note, retrieved.ai_provider_name) == ("Replicate", "via sdk", "replicate")
    assert REPLICATE_TOKEN not in str(retrieved.model_dump())
    updated = portkey.virtual_keys.update(slug=slug, name="Renamed",
                                          rate_limits=[{"type": "requests", "unit": "rpm", "value": 696}],
                                          usage_limits={"credit_limit": 25, "periodic_reset": "monthly",
                                                        "alert_threshold": 20})
    assert updated.slug == slug and updated.name == "Renamed"
    budget = portkey.virtual_keys.retrieve(slug=slug)
    assert budget.usage_limits == {"credit_limit": 25, "periodic_reset": "monthly", "alert_threshold": 20}

    # The new virtual key works at once, with no restart, through the same SDK.
    account = httpx.get(control.v1 + "/account", headers={"x-portkey-api-key": control.admin_key,
                                                          "x-portkey-virtual-key": slug})  # fmt: skip
    assert account.status_code == 200, account.text

    portkey.virtual_keys.delete(slug=slug)
    with pytest.raises(NotFoundError):
        portkey.virtual_keys.retrieve(slug=slug)


def test_api_keys(portkey, control):
    created = portkey.api_keys.create(type="workspace", sub_type="service", name="sdk key",
                                      scopes=["configs.read", "configs.list"], workspace_id="ws-ignored",
                                      rate_limits=[{"type": "requests", "unit": "rpm", "value": 30}])
    assert created.object == "api-key" and created.key.startswith("mp-")
    as_new_key = Portkey(api_key=created.key, base_url=control.v1)
    assert as_new_key.configs.list().object == "list"
    with pytest.raises(PermissionDeniedError):
        as_new_key.api_keys.list()

    retrieved = portkey.api_keys.retrieve(id=created.id)
    assert (retrieved.name, retrieved.status, retrieved.scopes) == ("sdk key", "active", ["configs.read"])
    assert retrieved.rate_limits == [{"type": "requests", "unit": "rpm", "value": 30}]
    assert retrieved.key != created.key
    page = portkey.api_keys.list(page_size=1, current_page=0)
    assert page.total >= 2 and len(page.data) == 1
    portkey.api_keys.update(id=created.id, name="renamed", scopes=["configs.read", "inference"],
                            rate_limits=[{"type": "requests", "unit": "rpw", "value": 1000}])
    updated = portkey.api_keys.retrieve(id=created.id)
    assert updated.scopes == ["configs.read", "inference"]
    assert updated.rate_limits == [{"type": "requests", "unit": "rpw", "value": 1000}]

    portkey.api_keys.delete(id=created.id)
    with pytest.raises(NotFoundError):
        portkey.api_keys.retrieve(id=created.id)

    # Portkey's data-plane scope: completions.write is ModelPort's inference
    inference = portkey.api_keys.create(type="workspace", sub_type="service", name="app",
                                        scopes=["completions.write", "analytics.view"])
    assert portkey.api_keys.retrieve(id=inference.id).scopes == ["inference", "logs.read"]
    answer = httpx.post(control.v1 + "/chat/completions", json={}, headers={"x-portkey-api-key": inference.key})
    assert answer.status_code == 400 and "no provider chosen" in answer.text  # authenticated for inference


def test_configs(portkey, control, fake_replicate):
    server, _ = fake_replicate
    vk = portkey.virtual_keys.create(name="cfg target", provider="replicate", key=REPLICATE_TOKEN,
                                     custom_host=server.url + "/v1").slug
    config = {"strategy": {"mode": "fallback"}, "targets": [{"virtual_key": vk}]}
    created = portkey.configs.create(name="sdk config", config=config, is_default=0)
    assert created.id.startswith("pc-") and created.slug

    retrieved = portkey.configs.retrieve(slug=created.slug)
    assert (retrieved.name, retrieved.config) == ("sdk config", config)
    assert (retrieved.is_default, retrieved.status) == (0, "active")
    assert created.slug in [item["slug"] for item in portkey.configs.list().data]

    # A saved config id works in x-portkey-config, as the SDK's own config= option sends it.
    routed = Portkey(api_key=control.admin_key, base_url=control.v1, config=created.id)
    assert routed.get(path="/account").status_code == 200

    updated = portkey.configs.update(slug=created.slug, name="renamed", status="archived")
    assert updated.object == "config"
    assert portkey.configs.retrieve(slug=created.slug).status == "archived"
    portkey.configs.delete(slug=created.slug)
    with pytest.raises(NotFoundError):
        portkey.configs.retrieve(slug=created.slug)


def test_integrations_and_providers(portkey, fake_replicate):
    server, _ = fake_replicate
    slug = unique("org")
    created = portkey.integrations.create(name="Replicate org", ai_provider_id="replicate", key=REPLICATE_TOKEN,
                                          slug=slug, description="shared",
                                          configurations={"custom_host": server.url + "/v1"})
    assert created.slug == slug
    listed = portkey.integrations.list()
    assert slug in [item.slug for item in listed.data]
    detail = portkey.integrations.retrieve(slug=slug)
    assert (detail.ai_provider_id, detail.description) == ("replicate", "shared") and detail.masked_key
    portkey.integrations.update(slug=slug, description="updated")
    assert portkey.integrations.retrieve(slug=slug).description == "updated"

    provider = portkey.providers.create(name="Team B", integration_id=slug, note="b")
    assert provider.slug.startswith("team-b-")
    assert provider.slug in [item.slug for item in portkey.providers.list().data]
    assert portkey.providers.retrieve(slug=provider.slug).integration_id == slug
    updated = portkey.providers.update(slug=provider.slug, note="team b",
                                       rate_limits={"type": "requests", "unit": "rpd", "value": 100})
    assert updated.slug == provider.slug
    assert portkey.providers.retrieve(slug=provider.slug).rate_limits == [{"type": "requests", "unit": "rpd",
                                                                            "value": 100}]
    with pytest.raises(ConflictError):
        portkey.integrations.delete(slug=slug)
    portkey.providers.delete(slug=provider.slug)
    portkey.integrations.delete(slug=slug)
    with pytest.raises(NotFoundError):
        portkey.integrations.retrieve(slug=slug)


def test_sdk_sees_clear_errors_without_the_secret(portkey):
    with pytest.raises(BadRequestError) as invalid:
        portkey.virtual_keys.create(name="x", provider="not-a-provider", key=SECRET)
    assert "provider must be one of" in invalid.value.message and SECRET not in str(invalid.value.body)
    slug = unique("dup")
    portkey.virtual_keys.create(name="x", provider="openai", key=SECRET, slug=slug)
    with pytest.raises(ConflictError):
        portkey.virtual_keys.create(name="x", provider="openai", key=SECRET, slug=slug)
