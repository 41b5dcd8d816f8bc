"""The control plane over raw HTTP: api-keys, virtual-keys, integrations, providers, configs, /openapi.json.

A gateway process of its own (records made here do not leak into other modules); a fake Replicate
proves that what the control plane stores is used by the very next proxied request.
"""

from __future__ import annotations

import secrets
from typing import Any, Iterator

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi

from modelport.control.app import RESOURCES
from tests.conftest import REPLICATE_TOKEN
from tests.harness import GatewayProcess

# Made-up provider secrets, distinctive enough to search for in files, logs and replies.
SECRET = "cp-test-provider-secret-0042"
OTHER_SECRET = "cp-test-provider-secret-0043"


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("control") / "data", log_level="debug") as process:
        yield process


@pytest.fixture
def admin(control: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=control.v1, headers=control.headers(), timeout=20) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def replicate_virtual_key(admin: httpx.Client, fake_replicate: Any, **extra: Any) -> str:
    server, _ = fake_replicate
    body = {"name": "Replicate team", "provider": "replicate", "key": REPLICATE_TOKEN,
            "custom_host": server.url + "/v1", "slug": unique("vk"), **extra}
    created = admin.post("/virtual-keys", json=body)
    assert created.status_code == 200, created.text
    return created.json()["slug"]


def new_key(admin: httpx.Client, **body: Any) -> tuple[str, str]:
    created = admin.post("/api-keys", json={"name": unique("key"), **body})
    assert created.status_code == 200, created.text
    return created.json()["id"], created.json()["key"]


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["x-portkey-gateway-exception"] == "true"
    return response.json()["error"]["message"]


def test_every_resource_in_the_route_table_reaches_the_control_plane(admin: httpx.Client) -> None:
    """The server dispatches /v1/<resource> by the control plane's own route table (control/app.py
    ``RESOURCES``): a path no route matches under any of them is the control plane's 404, not a request
    for the gateway to proxy to a provider."""
    assert {"api-keys", "virtual-keys", "integrations", "providers", "configs", "logs", "feedback"} <= RESOURCES
    for resource in sorted(RESOURCES):
        assert "no control-plane route" in error_of(admin.get(f"/{resource}/no/such/route/here"), 404), resource


# -- virtual keys ------------------------------------------------------------------------------------
def test_virtual_key_lifecycle(admin):
    slug = unique("vk")
    created = admin.post("/virtual-keys", json={"name": "Azure team", "provider": "azure-openai", "key": SECRET,
                                                "slug": slug, "resourceName": "team-res", "apiVersion": "2024-06-01",
                                                "note": "first", "rate_limits": {"type": "requests", "unit": "rpm",
                                                                                 "value": 60}})
    assert created.json() == {"id": slug, "slug": slug, "object": "virtual-key"}
    got = admin.get(f"/virtual-keys/{slug}").json()
    assert got["ai_provider_name"] == "azure-openai"
    assert got["model_config"] == {"resourceName": "team-res", "apiVersion": "2024-06-01"}
    assert got["rate_limits"] == [{"type": "requests", "unit": "rpm", "value": 60}]
    assert got["masked_api_key"] and got["masked_api_key"] != SECRET
    assert slug in [item["slug"] for item in admin.get("/virtual-keys").json()["data"]]

    updated = admin.put(f"/virtual-keys/{slug}", json={"note": None, "name": "Azure B", "deploymentName": "gpt4"})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["note"], updated.json()["name"]) == (None, "Azure B")
    assert updated.json()["model_config"]["deploymentName"] == "gpt4"

    assert admin.delete(f"/virtual-keys/{slug}").json() == {}
    assert "no virtual-key" in error_of(admin.get(f"/virtual-keys/{slug}"), 404)


def test_virtual_key_is_usable_at_once_as_slug(admin, control, fake_replicate):
    _, replicate = fake_replicate
    slug = replicate_virtual_key(admin, fake_replicate)
    for header in ({"x-portkey-provider": f"@{slug}"}, {"x-portkey-virtual-key": slug}):
        response = admin.get("/account", headers=header)
        assert response.status_code == 200, response.text
    assert replicate.requests_to("/v1/account")[-1].headers["Authorization"] == f"Bearer {REPLICATE_TOKEN}"


def test_new_provider_secret_is_used_on_the_next_request(admin, fake_replicate):
    slug = replicate_virtual_key(admin, fake_replicate)
    assert admin.put(f"/virtual-keys/{slug}", json={"key": "r8_wrong_token"}).status_code == 200
    assert admin.get("/account", headers={"x-portkey-provider": f"@{slug}"}).status_code == 401  # from the fake
    assert admin.put(f"/virtual-keys/{slug}", json={"key": REPLICATE_TOKEN}).status_code == 200
    assert admin.get("/account", headers={"x-portkey-provider": f"@{slug}"}).status_code == 200


# -- integrations and providers ----------------------------------------------------------------------
def test_provider_inherits_its_integrations_credential(admin, fake_replicate):
    server, _ = fake_replicate
    integration = unique("int")
    created = admin.post("/integrations", json={
        "name": "Replicate org", "ai_provider_id": "replicate", "key": REPLICATE_TOKEN, "slug": integration,
        "description": "org-wide", "configurations": {"custom_host": server.url + "/v1"}})  # fmt: skip
    assert created.json() == {"id": integration, "slug": integration, "object": "integration"}
    detail = admin.get(f"/integrations/{integration}").json()
    assert detail["configurations"] == {"custom_host": server.url + "/v1"}
    assert detail["masked_key"] and detail["description"] == "org-wide"

    provider = admin.post("/providers", json={"name": "Team A", "integration_id": integration}).json()["slug"]
    assert provider.startswith("team-a-")
    assert admin.get(f"/providers/{provider}").json()["integration_id"] == integration
    assert admin.get("/account", headers={"x-portkey-provider": f"@{provider}"}).status_code == 200

    assert "used by" in error_of(admin.delete(f"/integrations/{integration}"), 409)
    assert admin.delete(f"/providers/{provider}").status_code == 200
    assert admin.delete(f"/integrations/{integration}").status_code == 200


def test_each_resource_sees_only_its_own_kind(admin):
    integration = unique("int")
    admin.post("/integrations", json={"name": "Org", "ai_provider_id": "openai", "key": SECRET, "slug": integration})
    assert admin.get(f"/virtual-keys/{integration}").status_code == 404
    assert admin.delete(f"/providers/{integration}").status_code == 404
    assert integration not in [p["slug"] for p in admin.get("/virtual-keys?page_size=1000").json()["data"]]
    assert admin.get(f"/integrations/{integration}").status_code == 200


def test_provider_needs_an_existing_integration(admin):
    message = error_of(admin.post("/providers", json={"name": "x", "integration_id": "no-such-integration"}), 400)
    assert "integration_id" in message


# -- configs -----------------------------------------------------------------------------------------
def test_saved_config_is_usable_by_id_and_slug(admin, fake_replicate):
    vk = replicate_virtual_key(admin, fake_replicate)
    slug = unique("cfg")
    config = {"retry": {"attempts": 1}, "targets": [{"provider": f"@{vk}"}], "strategy": {"mode": "fallback"}}
    created = admin.post("/configs", json={"name": "fallback", "config": config, "slug": slug}).json()
    assert created["object"] == "config" and created["slug"] == slug
    for ref in (created["id"], slug):
        response = admin.get("/account", headers={"x-portkey-config": ref})
        assert response.status_code == 200, response.text
    got = admin.get(f"/configs/{slug}").json()
    assert (got["config"], got["is_default"], got["status"]) == (config, 0, "active")

    updated = admin.put(f"/configs/{created['id']}", json={"status": "archived", "name": "renamed", "slug": slug})
    assert (updated.json()["status"], updated.json()["name"]) == ("archived", "renamed")
    assert admin.delete(f"/configs/{slug}").json() == {}
    assert admin.get(f"/configs/{created['id']}").status_code == 404


def test_config_is_validated_before_it_is_saved(admin):
    bad = {"strategy": {"mode": "fallback"}, "targets": [{"provider": "openai", "retry": {"attempts": 99}}]}
    message = error_of(admin.post("/configs", json={"name": "b", "config": bad}), 400)
    assert "config.targets[0].retry.attempts" in message
    with_key = {"targets": [{"provider": "openai", "api_key": SECRET}], "strategy": {"mode": "single"}}
    message = error_of(admin.post("/configs", json={"name": "k", "config": with_key}), 400)
    assert "virtual key" in message and SECRET not in message


# -- api keys ----------------------------------------------------------------------------------------
def test_api_key_lifecycle(admin, control, fake_replicate):
    vk = replicate_virtual_key(admin, fake_replicate)
    created = admin.post("/api-keys/workspace/service", json={
        "name": "svc", "scopes": ["inference", "configs.read"], "allowed_providers": [f"@{vk}"],
        "defaults": {"metadata": {"team": "a"}}, "expires_at": "2999-01-01T00:00:00Z", "workspace_id": "ignored"})
    assert created.status_code == 200, created.text
    key_id, token = created.json()["id"], created.json()["key"]
    use = {"x-portkey-api-key": token, "x-portkey-provider": f"@{vk}"}
    assert httpx.get(control.v1 + "/account", headers=use).status_code == 200

    got = admin.get(f"/api-keys/{key_id}").json()
    assert got["key"] != token and token.startswith(got["key"].rstrip("…"))
    assert (got["status"], got["scopes"]) == ("active", ["inference", "configs.read"])
    assert got["defaults"] == {"metadata": {"team": "a"}}
    assert got["expires_at"] == "2999-01-01T00:00:00.000Z"

    updated = admin.put(f"/api-keys/{key_id}", json={"id": key_id, "scopes": ["inference"], "name": "svc2"}).json()
    assert (updated["scopes"], updated["name"]) == (["inference"], "svc2")

    rotated = admin.post(f"/api-keys/{key_id}/rotate").json()
    assert rotated["id"] == key_id and rotated["key"] != token
    assert httpx.get(control.v1 + "/account", headers=use).status_code == 401
    assert httpx.get(control.v1 + "/account", headers={**use, "x-portkey-api-key": rotated["key"]}).status_code == 200

    assert admin.delete(f"/api-keys/{key_id}").json() == {}
    assert admin.get(f"/api-keys/{key_id}").status_code == 404


def test_revoked_key_stops_working_on_the_next_request(admin, control, fake_replicate):
    vk = replicate_virtual_key(admin, fake_replicate)
    key_id, token = new_key(admin)
    use = {"x-portkey-api-key": token, "x-portkey-provider": f"@{vk}"}
    assert httpx.get(control.v1 + "/account", headers=use).status_code == 200
    revoked = admin.post(f"/api-keys/{key_id}/revoke")
    assert revoked.json()["status"] == "revoked"
    assert httpx.get(control.v1 + "/account", headers=use).status_code == 401
    assert error_of(admin.post(f"/api-keys/{key_id}/rotate"), 409)


def test_portkey_scope_names_map_onto_ours(admin):
    key_id, _ = new_key(admin, scopes=["virtual_keys.create", "virtual_keys.list", "logs.export", "configs.update"])
    assert admin.get(f"/api-keys/{key_id}").json()["scopes"] == ["providers.write", "providers.read", "logs.read",
                                                                  "configs.write"]


def test_a_scoped_key_cannot_reach_beyond_its_scopes(admin, control):
    _, reader = new_key(admin, scopes=["configs.read"])
    as_reader = {"x-portkey-api-key": reader}
    assert httpx.get(control.v1 + "/configs", headers=as_reader).status_code == 200
    assert "configs.write" in error_of(httpx.post(control.v1 + "/configs", headers=as_reader,
                                                  json={"name": "x", "config": {}}), 403)
    assert error_of(httpx.get(control.v1 + "/api-keys", headers=as_reader), 403)


def test_a_key_manager_cannot_mint_or_seize_more_power(admin, control):
    _, manager = new_key(admin, scopes=["keys.read", "keys.write", "inference"])
    as_manager = httpx.Client(base_url=control.v1, headers={"x-portkey-api-key": manager})
    assert error_of(as_manager.post("/api-keys", json={"name": "x", "scopes": ["admin"]}), 403)
    admin_id = next(k["id"] for k in admin.get("/api-keys?page_size=1000").json()["data"] if "admin" in k["scopes"])
    assert error_of(as_manager.post(f"/api-keys/{admin_id}/rotate"), 403)
    assert error_of(as_manager.put(f"/api-keys/{admin_id}", json={"name": "mine"}), 403)
    assert as_manager.post("/api-keys", json={"name": "ok", "scopes": ["inference"]}).status_code == 200


# -- authentication ----------------------------------------------------------------------------------
def test_no_key_is_401_and_a_bad_key_is_401(control):
    assert "x-portkey-api-key" in error_of(httpx.get(control.v1 + "/virtual-keys"), 401)
    assert error_of(httpx.get(control.v1 + "/virtual-keys", headers={"x-portkey-api-key": "mp-not-a-key"}), 401)


def test_inference_key_is_403(admin, control):
    _, token = new_key(admin)
    assert "lacks" in error_of(httpx.get(control.v1 + "/api-keys", headers={"x-portkey-api-key": token}), 403)


def test_gateway_key_is_accepted_as_a_bearer_token(control):
    response = httpx.get(control.v1 + "/configs", headers={"Authorization": f"Bearer {control.admin_key}"})
    assert response.status_code == 200


# -- paging and input errors -------------------------------------------------------------------------
def test_lists_page_by_number(admin):
    for index in range(5):
        admin.post("/configs", json={"name": f"page-{index}", "config": {}})
    everything = admin.get("/configs", params={"page_size": 1000}).json()
    assert everything["object"] == "list" and everything["total"] == len(everything["data"]) >= 5
    ids = [c["id"] for c in everything["data"]]
    second = admin.get("/configs", params={"page_size": 2, "current_page": 1}).json()
    assert [c["id"] for c in second["data"]] == ids[2:4] and second["total"] == len(ids)
    beyond = admin.get("/configs", params={"page_size": 2, "current_page": 10_000}).json()
    assert beyond["data"] == [] and beyond["total"] == len(ids)
    assert "page_size" in error_of(admin.get("/configs", params={"page_size": 0}), 400)
    assert "current_page" in error_of(admin.get("/api-keys", params={"current_page": "x"}), 400)


@pytest.mark.parametrize(
    ("path", "body", "mentions"),
    [
        ("/virtual-keys", {"provider": "replicate", "key": SECRET}, "name"),
        ("/virtual-keys", {"name": "x", "key": SECRET}, "provider"),
        ("/virtual-keys", {"name": "x", "provider": "no-such-provider", "key": SECRET}, "provider must be one of"),
        ("/virtual-keys", {"name": 7, "provider": "openai"}, "name must be a string"),
        ("/virtual-keys", {"name": "x", "provider": "openai", "key": [SECRET]}, "key must be"),
        ("/virtual-keys", {"name": "x", "provider": "openai", "slug": "Bad Slug!"}, "slug must match"),
        ("/virtual-keys", {"name": "x", "provider": "openai", "kee": SECRET}, "unknown field(s) 'kee'"),
        ("/virtual-keys", {"name": "x", "provider": "openai", "custom_host": "ftp://x"}, "custom_host"),
        ("/virtual-keys", {"name": "x", "provider": "openai", "rate_limits": [{"type": "requests", "unit": "rps",
                                                                                "value": 1}]}, "rate_limits[0].unit"),
        ("/virtual-keys", {"name": "x", "provider": "openai", "usage_limits": {"credit_limit": "ten"}},
         "usage_limits.credit_limit"),
        ("/api-keys", {"name": "x", "rate_limits": {"type": "requests", "unit": "rpm", "value": -1}},
         "rate_limits[0].value"),
        ("/api-keys", {"name": "x", "usage_limits": {"credit_limit": 5, "next_usage_reset_at": "2030-01-01"}},
         "unknown key 'next_usage_reset_at'"),
        ("/virtual-keys", {"name": "x", "provider": "openai", "expires_at": "2030-01-01T00:00:00Z"}, "not supported"),
        ("/virtual-keys", [SECRET], "JSON object"),
        ("/integrations", {"name": "x", "ai_provider_id": "openai", "configurations": {"token": SECRET}},
         "configurations"),
        ("/api-keys", {"name": "x", "scopes": ["root"]}, "unknown scope"),
        ("/api-keys", {"name": "x", "expires_at": "yesterday"}, "expires_at"),
        ("/api-keys", {"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "future"),
        ("/api-keys", {"name": "x", "allowed_providers": ["not a provider"]}, "allowed_providers"),
        ("/api-keys", {"name": "x", "allowed_providers": ["no-such-provider"]}, "neither a provider id"),
        ("/api-keys", {"name": "x", "allowed_providers": ["@no-such-slug"]}, "no stored provider '@no-such-slug'"),
        ("/virtual-keys", {"name": "x", "provider": "no-such-provider"}, "provider must be one of"),
        ("/virtual-keys", {"name": "x", "provider": "azure-openai"}, "needs resourceName"),
        ("/integrations", {"name": "x", "ai_provider_id": "openai", "configurations": {"region": "eu"}},
         "'region' is not a setting of provider 'openai'"),
        ("/configs", {"name": "x", "config": {"retry": {"attempts": "three"}}}, "config.retry.attempts"),
        ("/api-keys/galaxy/service", {"name": "x"}, "type"),
        ("/configs", {"name": "x"}, "config"),
        ("/configs", {"name": "x", "config": {}, "is_default": "yes"}, "is_default"),
    ],
)
def test_invalid_input_is_a_clear_400(admin, path, body, mentions):
    message = error_of(admin.post(path, json=body), 400)
    assert mentions in message
    assert SECRET not in message


def test_invalid_json_is_a_400(admin):
    truncated = b'{"name": "x", "key": "' + SECRET.encode()
    message = error_of(admin.post("/configs", content=truncated), 400)
    assert "not valid JSON" in message and SECRET not in message


def test_duplicate_slug_is_409(admin):
    slug = unique("dup")
    assert admin.post("/virtual-keys", json={"name": "a", "provider": "openai", "slug": slug}).status_code == 200
    taken = admin.post("/integrations", json={"name": "b", "ai_provider_id": "openai", "slug": slug})
    assert slug in error_of(taken, 409)
    config = {"name": "c", "config": {}, "slug": slug}
    assert admin.post("/configs", json=config).status_code == 200
    assert error_of(admin.post("/configs", json=config), 409)


@pytest.mark.parametrize("path", ["/virtual-keys/nope", "/integrations/nope", "/providers/nope",
                                  "/api-keys/key_nope", "/configs/nope"])
def test_unknown_id_is_404(admin, path):
    assert error_of(admin.get(path), 404)
    assert error_of(admin.delete(path), 404)
    assert error_of(admin.put(path, json={}), 404)


def test_wrong_method_is_405(admin):
    response = admin.patch("/configs")
    assert error_of(response, 405) and response.headers["allow"] == "GET, POST"


# -- secrets -----------------------------------------------------------------------------------------
def test_raw_secret_is_nowhere_after_creation(admin, control):
    slug, integration = unique("vk"), unique("int")
    replies = [
        admin.post("/virtual-keys", json={"name": "s", "provider": "openai", "key": SECRET, "slug": slug}),
        admin.get(f"/virtual-keys/{slug}"),
        admin.get("/virtual-keys", params={"page_size": 1000}),
        admin.put(f"/virtual-keys/{slug}", json={"key": OTHER_SECRET}),
        admin.post("/integrations", json={"name": "i", "ai_provider_id": "openai", "key": SECRET, "slug": integration}),
        admin.put(f"/integrations/{integration}", json={"key": OTHER_SECRET, "configurations": {"openai_project": "v"}}),
        admin.get("/integrations", params={"page_size": 1000}),
        # failures that carry the secret in the body must not echo it
        admin.post("/virtual-keys", json={"name": "s", "provider": "openai", "key": SECRET, "slug": slug}),
        admin.post("/virtual-keys", json={"name": "s", "provider": "nope", "key": SECRET}),
        admin.post("/virtual-keys", json={"name": SECRET * 100, "provider": "openai", "key": SECRET}),
        admin.post("/virtual-keys", json={"name": "s", "provider": "openai", SECRET: SECRET}),
        admin.post("/virtual-keys", json={"name": "s", "provider": SECRET, "key": SECRET}),
        admin.put(f"/virtual-keys/{slug}", json={"key": SECRET, "custom_host": SECRET}),
        admin.post("/api-keys", json={"name": "s", "scopes": [SECRET]}),
    ]
    assert [r.status_code for r in replies[:7]] == [200] * 7, [r.text for r in replies]
    assert all(r.status_code in (400, 409) for r in replies[7:]), [r.text for r in replies[7:]]
    for reply in replies:
        assert SECRET not in reply.text and OTHER_SECRET not in reply.text
    assert admin.get(f"/virtual-keys/{slug}").json()["masked_api_key"]
    for path in [*control.data_dir.rglob("*"), control.log_path]:
        if path.is_file():
            content = path.read_bytes()
            assert SECRET.encode() not in content and OTHER_SECRET.encode() not in content, path


# -- the OpenAPI document ----------------------------------------------------------------------------
def test_openapi_document_is_valid_openapi_3_1(control):
    response = httpx.get(control.url + "/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)
    for path, methods in {"/virtual-keys": {"get", "post"}, "/virtual-keys/{slug}": {"get", "put", "delete"},
                          "/integrations/{slug}": {"get", "put", "delete"}, "/providers": {"get", "post"},
                          "/api-keys/{type}/{sub_type}": {"post"}, "/api-keys/{key_id}/rotate": {"post"},
                          "/configs/{ref}": {"get", "put", "delete"}}.items():
        assert methods <= set(document["paths"][path]), path
    key_field = document["paths"]["/virtual-keys"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert key_field["properties"]["key"]["writeOnly"] is True


def test_replies_match_the_published_schemas(admin, control, fake_replicate):
    document = httpx.get(control.url + "/openapi.json").json()
    vk = replicate_virtual_key(admin, fake_replicate, rate_limits=[{"type": "requests", "unit": "rph", "value": 9}])
    key_id, _ = new_key(admin)
    config_id = admin.post("/configs", json={"name": "s", "config": {}}).json()["id"]
    calls = [("get", "/virtual-keys", "/virtual-keys"), ("get", f"/virtual-keys/{vk}", "/virtual-keys/{slug}"),
             ("get", "/api-keys", "/api-keys"), ("get", f"/api-keys/{key_id}", "/api-keys/{key_id}"),
             ("get", "/configs", "/configs"), ("get", f"/configs/{config_id}", "/configs/{ref}"),
             ("get", "/integrations", "/integrations"), ("get", "/providers", "/providers")]
    for method, url, template in calls:
        schema = document["paths"][template][method]["responses"]["200"]["content"]["application/json"]["schema"]
        jsonschema.validate(admin.request(method, url).json(), schema)
