"""The proxy route with Replicate: raw HTTP through the gateway to a strict fake Replicate."""

from __future__ import annotations

import gzip

import httpx
import pytest

from tests.conftest import REPLICATE_TOKEN

SLUG = {"x-portkey-provider": "@replicate-test"}


@pytest.fixture
def client(gateway):
    with httpx.Client(base_url=gateway.v1, headers=gateway.headers(**SLUG), timeout=20) as http:
        yield http


def test_prediction_lifecycle_stays_on_gateway(client, gateway, fake_replicate):
    _, replicate = fake_replicate
    created = client.post("/predictions", json={"version": _echo_version(client), "input": {"text": "Alice"}})
    assert created.status_code == 201, created.text
    prediction = created.json()
    assert prediction["urls"]["get"] == f"{gateway.v1}/predictions/{prediction['id']}"
    assert prediction["urls"]["cancel"] == f"{gateway.v1}/predictions/{prediction['id']}/cancel"
    assert prediction["urls"]["web"].startswith("https://replicate.com/p/")
    polled = client.get(prediction["urls"]["get"])
    while polled.json()["status"] not in ("succeeded", "failed", "canceled"):
        polled = client.get(prediction["urls"]["get"])
    assert polled.json()["output"] == "Alice"
    assert polled.headers["x-portkey-provider"] == "replicate"
    assert "x-portkey-gateway-exception" not in polled.headers
    received = replicate.requests_to(f"/v1/predictions/{prediction['id']}")[-1]
    assert received.headers["Authorization"] == f"Bearer {REPLICATE_TOKEN}"
    assert not any(name.lower().startswith("x-portkey-") for name in received.headers)


def test_stored_credential_replaces_the_clients_authorization(client, fake_replicate):
    _, replicate = fake_replicate
    response = client.get("/account", headers={"Authorization": "Bearer sk-something-else"})
    assert response.status_code == 200
    assert replicate.requests_to("/v1/account")[-1].headers["Authorization"] == f"Bearer {REPLICATE_TOKEN}"


def test_trace_id_is_echoed_or_generated(client):
    given = client.get("/account", headers={"x-portkey-trace-id": "trace-abc"})
    assert given.headers["x-portkey-trace-id"] == "trace-abc"
    generated = client.get("/account")
    assert len(generated.headers["x-portkey-trace-id"]) == 32


def test_pagination_stays_on_gateway(client, gateway):
    version = _echo_version(client)
    for name in ("a", "b", "c", "d", "e"):
        client.post("/predictions", json={"version": version, "input": {"text": name}})
    page = client.get("/predictions").json()
    seen = [p["id"] for p in page["results"]]
    assert page["next"].startswith(gateway.v1 + "/predictions?cursor=")
    while page["next"]:
        page = client.get(page["next"]).json()
        seen += [p["id"] for p in page["results"]]
        if page["previous"]:
            assert page["previous"].startswith(gateway.v1 + "/predictions")
    assert len(seen) == len(set(seen)) >= 5


def test_file_urls_stay_upstream_because_inputs_carry_them(client, fake_replicate):
    server, _ = fake_replicate
    upload = client.post("/files", files={"content": ("hello.txt", b"hello world", "text/plain")})
    assert upload.status_code == 201, upload.text
    assert upload.json()["urls"]["get"] == f"{server.url}/v1/files/{upload.json()['id']}"
    listed = client.get("/files").json()
    assert any(f["urls"]["get"].startswith(server.url) for f in listed["results"])


def test_sync_mode_waits_and_rewrites_location(client, gateway, fake_replicate):
    _, replicate = fake_replicate
    done = client.post("/models/test/echo/predictions", json={"input": {"text": "hi"}}, headers={"Prefer": "wait=5"})
    assert done.status_code == 201
    assert done.headers["Preference-Applied"] == "wait=5"
    assert done.json()["status"] == "succeeded"
    replicate.script_next(run_seconds=5)
    pending = client.post("/models/test/echo/predictions", json={"input": {"text": "slow"}}, headers={"Prefer": "wait=1"})
    assert pending.json()["status"] in ("starting", "processing")
    assert pending.headers["Location"] == f"{gateway.v1}/predictions/{pending.json()['id']}"
    assert replicate.requests_to("/v1/models/test/echo/predictions")[-1].headers["Prefer"] == "wait=1"


def test_cancel_after_passes_through(client, fake_replicate):
    _, replicate = fake_replicate
    created = client.post("/models/test/echo/predictions", json={"input": {"text": "x"}}, headers={"Cancel-After": "30s"})
    assert created.json()["deadline"]
    assert replicate.requests_to("/v1/models/test/echo/predictions")[-1].headers["Cancel-After"] == "30s"


def test_stream_url_is_a_signed_gateway_route_needing_no_auth(client, gateway):
    created = client.post("/models/test/llm/predictions", json={"input": {"prompt": "one two three"}, "stream": True}).json()
    stream_url = created["urls"]["stream"]
    assert stream_url.startswith(gateway.v1 + "/streams/")
    with httpx.stream("GET", stream_url, headers={"Accept": "text/event-stream"}, timeout=20) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    assert "event: output" in text and "event: done" in text
    assert "one" in text and "three" in text
    tampered = stream_url[:-4] + ("AAAA" if not stream_url.endswith("AAAA") else "BBBB")
    refused = httpx.get(tampered, timeout=5)
    assert refused.status_code == 404
    assert refused.headers["x-portkey-gateway-exception"] == "true"


def test_upstream_errors_reach_the_client_unchanged(client, fake_replicate):
    _, replicate = fake_replicate
    replicate.fail_next(429, path="/v1/predictions", retry_after=7)
    response = client.post("/predictions", json={"version": _echo_version(client), "input": {"text": "x"}})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 429
    assert "x-portkey-gateway-exception" not in response.headers
    invalid = client.post("/predictions", json={"version": _echo_version(client), "input": {}, "signal": 1})
    assert invalid.status_code == 422 and invalid.json()["invalid_fields"]


def test_wrong_upstream_token_is_the_providers_401(gateway, fake_replicate):
    server, _ = fake_replicate
    response = httpx.get(gateway.v1 + "/account", headers=gateway.headers(**{"x-portkey-provider": "@replicate-test"}))
    assert response.status_code == 200
    bad = httpx.get(server.url + "/v1/account", headers={"Authorization": "Bearer wrong"})
    assert bad.json()["detail"] == "You did not pass a valid authentication token"


def test_query_method_and_text_body_pass_through(client, fake_replicate):
    _, replicate = fake_replicate
    response = client.request("QUERY", "/models", content=b"echo", headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    assert any(m["name"] == "echo" for m in response.json()["results"])
    received = replicate.requests_to("/v1/models", method="QUERY")[-1]
    assert received.body == b"echo" and received.headers["Content-Type"] == "text/plain"


def test_path_and_query_reach_the_provider_byte_for_byte(client, fake_replicate):
    _, replicate = fake_replicate
    client.get("/models/test/echo/versions?x=a%2Fb%20c&y=%E2%9C%93&z")
    assert replicate.requests_to("/v1/models/test/echo/versions")[-1].path_qs == "/v1/models/test/echo/versions?x=a%2Fb%20c&y=%E2%9C%93&z"


def test_unified_paths_are_never_forwarded_to_replicate_as_paths(client, fake_replicate):
    _, replicate = fake_replicate
    response = client.post("/chat/completions", json={"model": "x", "messages": []})
    assert response.status_code == 400  # the gateway's answer (Replicate's to the path would be a bare 404)
    assert response.headers["x-portkey-gateway-exception"] == "true"
    assert not replicate.requests_to("/v1/chat/completions")


def test_every_method_is_forwarded(client, fake_replicate):
    _, replicate = fake_replicate
    for method in ("PUT", "PATCH", "DELETE"):
        client.request(method, "/models/test/nothing-here", json={"description": "x"} if method != "DELETE" else None)
        assert replicate.requests_to("/v1/models/test/nothing-here", method=method)


def test_compressed_bodies_are_rewritten_with_consistent_headers(client, gateway, fake_replicate):
    server, _ = fake_replicate
    headers = {"Accept-Encoding": "gzip", "Authorization": f"Bearer {REPLICATE_TOKEN}"}
    with httpx.stream("GET", server.url + "/v1/predictions", headers=headers) as direct:
        assert direct.headers["content-encoding"] == "gzip"  # the fake compresses like Replicate does
    with httpx.stream("GET", gateway.v1 + "/predictions", headers={**gateway.headers(**SLUG), "Accept-Encoding": "gzip"}) as response:
        wire = b"".join(response.iter_raw())
        assert response.status_code == 200
        assert int(response.headers["content-length"]) == len(wire)
        body = gzip.decompress(wire) if response.headers.get("content-encoding") == "gzip" else wire
    assert server.url.encode() + b"/v1/predictions" not in body
    assert b'"results"' in body


def _echo_version(client: httpx.Client) -> str:
    return client.get("/models/test/echo").json()["latest_version"]["id"]
