"""Every provider in the registry works on the proxy route, each with its own way of presenting the key."""

from __future__ import annotations

import hashlib
import socket

import httpx
import pytest
from aiohttp import web

from modelport.providers.registry import PROVIDERS
from tests.fakes.server import FakeServer

REQUIRED = {"replicate", "openai", "anthropic", "azure-openai", "google", "mistral-ai", "groq", "together-ai",
            "deepseek", "fireworks-ai", "openrouter", "perplexity-ai", "cohere", "ollama"}
AUTH = {"anthropic": ("x-api-key", "k-123"), "azure-openai": ("api-key", "k-123"), "google": ("x-goog-api-key", "k-123"),
        "ollama": None}


@pytest.fixture(scope="module")
def echo():
    seen: list[web.Request] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"path": request.path_qs})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    with FakeServer(app) as server:
        yield server, seen


def test_the_registry_has_the_providers_users_expect():
    assert REQUIRED <= set(PROVIDERS)
    assert PROVIDERS["replicate"].base_url == "https://api.replicate.com/v1"
    assert PROVIDERS["replicate"].unified == {"chat", "images"}  # its own API otherwise, on the proxy route


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_proxy_route_reaches_each_provider_with_its_auth(open_gateway, echo, provider):
    server, seen = echo
    headers = {"x-portkey-provider": provider, "x-portkey-custom-host": server.url + "/base",
               "Authorization": "Bearer k-123", "x-portkey-azure-resource-name": "res",
               "x-portkey-aws-access-key-id": "AKID-123", "x-portkey-aws-secret-access-key": "k-123",
               "x-portkey-aws-region": "us-east-1"}
    response = httpx.get(open_gateway.v1 + "/some/path?x=1", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["path"] == "/base/some/path?x=1"
    received = seen[-1].headers
    expected = AUTH.get(provider, ("authorization", "Bearer k-123"))
    if provider == "bedrock":  # SigV4 in place of the key (tests/test_bedrock_gateway.py checks it is right)
        assert received["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID-123/")
        assert received["x-amz-content-sha256"] == hashlib.sha256(b"").hexdigest()
    elif expected is None:
        assert "authorization" not in received
    else:
        name, value = expected
        assert received[name] == value
        if name != "authorization":
            assert "authorization" not in received
    assert not any(h.lower().startswith("x-portkey-") for h in received)
    if provider == "anthropic":
        assert received["anthropic-version"] == "2023-06-01"


def test_the_upstream_gets_only_the_clients_own_headers_and_the_key(open_gateway, echo):
    """Hop-by-hop and x-portkey-* headers stay behind, and nothing is added: no User-Agent, Accept or
    Accept-Encoding of the gateway's own (an added Accept-Encoding would get the client a compressed
    body it never asked for). Sent over a raw socket so no client library adds headers either."""
    server, seen = echo
    gateway_host, gateway_port = open_gateway.v1.split("//", 1)[1].split("/", 1)[0].split(":")
    request = (f"GET /v1/some/path HTTP/1.1\r\nHost: {gateway_host}\r\nx-portkey-provider: openai\r\n"
               f"x-portkey-custom-host: {server.url}/base\r\nAuthorization: Bearer k-123\r\nX-Tenant: t1\r\n"
               "TE: trailers\r\nConnection: close\r\n\r\n")
    with socket.create_connection((gateway_host, int(gateway_port)), timeout=10) as sock:
        sock.sendall(request.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    received = {name.lower(): value for name, value in seen[-1].headers.items()}
    assert set(received) == {"host", "x-tenant", "authorization"}, received
    assert received["x-tenant"] == "t1" and received["authorization"] == "Bearer k-123"


def test_audio_and_rerank_are_served_only_where_the_providers_api_has_them():
    from modelport.providers.registry import serves

    served = {endpoint: sorted(spec.id for spec in PROVIDERS.values() if serves(spec, endpoint))
              for endpoint in ("transcriptions", "translations", "speech", "rerank")}
    assert served == {"transcriptions": ["azure-openai", "groq", "openai"], "translations": ["azure-openai", "groq", "openai"],
                      "speech": ["azure-openai", "openai"], "rerank": ["cohere", "together-ai"]}  # docs/audio-and-rerank.md
