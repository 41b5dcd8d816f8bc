"""Where a stored secret may go: only an admin sets a stored provider's custom_host, within the SSRF rules
unless the operator trusts the host (trusted_hosts, or a provider declared in the config file)."""

from __future__ import annotations

import secrets
from typing import Any, Iterator

import httpx
import pytest

from tests.conftest import OPENAI_KEY
from tests.harness import GatewayProcess

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def hosts_gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai) -> Iterator[GatewayProcess]:
    # Loopback is trusted here only because the config file declares a provider on 127.0.0.1.
    declared = {"slug": "declared-openai", "provider": "openai", "secret_env": "TEST_OPENAI_KEY",
                "custom_host": fake_openai[0].url + "/v1"}
    process = GatewayProcess(tmp_path_factory.mktemp("hosts") / "data", settings={"trusted_hosts": ["10.0.0.0/8"]},
                             providers=[declared], env={"TEST_OPENAI_KEY": OPENAI_KEY})
    with process:
        yield process


@pytest.fixture
def admin(hosts_gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hosts_gateway.v1, headers=hosts_gateway.headers(), timeout=20) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def client_with(admin: httpx.Client, hosts_gateway: GatewayProcess, *scopes: str) -> httpx.Client:
    created = admin.post("/api-keys", json={"name": unique("key"), "scopes": list(scopes)})
    assert created.status_code == 200, created.text
    return httpx.Client(base_url=hosts_gateway.v1, headers={"x-portkey-api-key": created.json()["key"]}, timeout=20)


def virtual_key(admin: httpx.Client, **extra: Any) -> str:
    body = {"name": "team", "provider": "openai", "key": OPENAI_KEY, "slug": unique("vk"), **extra}
    created = admin.post("/virtual-keys", json=body)
    assert created.status_code == 200, created.text
    return created.json()["slug"]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["x-portkey-gateway-exception"] == "true"
    return response.json()["error"]


def test_only_an_admin_may_change_where_a_stored_secret_goes(admin, hosts_gateway, fake_openai):
    slug = virtual_key(admin, custom_host=fake_openai[0].url + "/v1")
    integration = unique("int")
    assert admin.post("/integrations", json={"name": "org", "ai_provider_id": "openai", "key": OPENAI_KEY,
                                             "slug": integration,
                                             "configurations": {"custom_host": "https://api.example.com/v1"}}).status_code == 200
    with client_with(admin, hosts_gateway, "providers.write", "providers.read") as writer:
        for response in (
            writer.put(f"/virtual-keys/{slug}", json={"custom_host": "http://169.254.169.254/v1"}),
            writer.put(f"/virtual-keys/{slug}", json={"custom_host": None}),
            writer.post("/virtual-keys", json={"name": "x", "provider": "openai", "key": "k",
                                               "custom_host": "https://attacker.example/v1"}),
            writer.post("/integrations", json={"name": "x", "ai_provider_id": "openai", "key": "k",
                                               "configurations": {"custom_host": "https://attacker.example/v1"}}),
            writer.put(f"/integrations/{integration}", json={"configurations": {}}),  # would drop the host
        ):
            assert "only an admin key may set or change custom_host" in error_of(response, 403)["message"]
        # Everything else stays theirs to change, and so does sending the same host back.
        assert writer.put(f"/virtual-keys/{slug}", json={"note": "ok", "custom_host": fake_openai[0].url + "/v1"}).status_code == 200
        assert writer.post("/virtual-keys", json={"name": "y", "provider": "openai", "key": "k"}).status_code == 200
    assert admin.get(f"/virtual-keys/{slug}").json()["model_config"]["customHost"] == fake_openai[0].url + "/v1"


@pytest.mark.parametrize("host", ["http://169.254.169.254/v1", "http://192.168.1.10/v1", "http://[::1]:8000/v1",
                                  "http://metadata.google.internal/v1"])
def test_even_an_admin_cannot_point_a_stored_secret_at_a_private_address(admin, host):
    slug = virtual_key(admin)
    error = error_of(admin.put(f"/virtual-keys/{slug}", json={"custom_host": host}), 400)
    assert error["code"] == "forbidden_custom_host" and "MODELPORT_TRUSTED_HOSTS" in error["message"]
    refused = admin.post("/integrations", json={"name": "x", "ai_provider_id": "openai", "key": "k",
                                                "configurations": {"custom_host": host}})
    assert error_of(refused, 400)["code"] == "forbidden_custom_host"


def test_an_operator_trusted_network_may_be_named(admin):
    slug = virtual_key(admin, custom_host="http://10.0.0.5:8000/v1")
    assert admin.get(f"/virtual-keys/{slug}").json()["model_config"]["customHost"] == "http://10.0.0.5:8000/v1"


def test_a_stored_host_that_resolves_to_a_private_address_is_refused_at_connect_time(admin, fake_openai):
    # "localhost" passes the check when set (it is a name), but its addresses are loopback: the gateway
    # connects to an untrusted stored host through the SSRF-guarded session, so the secret never leaves.
    slug = virtual_key(admin, custom_host=fake_openai[0].url.replace("127.0.0.1", "localhost") + "/v1")
    before = fake_openai[1].count
    response = admin.post("/chat/completions", json=CHAT, headers={"x-portkey-provider": f"@{slug}"})
    assert error_of(response, 400)["code"] == "forbidden_custom_host"
    assert fake_openai[1].count == before


def test_a_provider_the_operator_declared_in_the_config_file_is_trusted(admin):
    response = admin.post("/chat/completions", json=CHAT, headers={"x-portkey-provider": "@declared-openai"})
    assert response.status_code == 200, response.text


def test_a_trusted_host_that_is_not_a_host_is_refused_at_start(tmp_path):
    from modelport.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="MODELPORT_TRUSTED_HOSTS"):
        Settings.load({"data_dir": tmp_path}, environ={"MODELPORT_TRUSTED_HOSTS": "10.0.0.0/8, http://x/"})
    loaded = Settings.load({"data_dir": tmp_path}, environ={"MODELPORT_TRUSTED_HOSTS": "10.0.0.0/8, llm.corp"})
    assert loaded.trusted_hosts == ("10.0.0.0/8", "llm.corp")
