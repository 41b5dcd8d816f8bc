"""The request path is normalised once: dot segments and encoded slashes never reach an upstream with a
stored credential, and ``//`` means what ``/`` means."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

SLUG = "@replicate-test"


def raw_request(gateway, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """Sends ``path`` exactly as written: httpx would resolve dot segments before sending."""
    origin = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(origin.hostname, origin.port, timeout=20)
    try:
        connection.request(method, path, body=body, headers={**gateway.headers(), **(headers or {})})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("path", [
    "/v1/../v1/account", "/v1/./account", "/v1/models/../account", "/v1/%2e%2e/account", "/v1/%2E/account",
    "/v1/models/.%2e/account", "/v1/models%2f..%2faccount", "/v1/models%2Fowner", "/v1/models\\..\\account",
    "/v1/models/owner/name/%5c..",
])
def test_a_path_that_could_leave_the_providers_base_is_refused(gateway, fake_replicate, path):
    _, replicate = fake_replicate
    seen = len(replicate.requests)
    status, headers, body = raw_request(gateway, "GET", path, {"x-portkey-provider": SLUG})
    assert status == 400, body
    assert headers["x-portkey-gateway-exception"] == "true"
    assert json.loads(body)["error"]["code"] == "invalid_path"
    assert len(replicate.requests) == seen  # nothing went upstream with the stored token


def test_empty_segments_are_collapsed_before_routing_and_forwarding(gateway, fake_replicate):
    _, replicate = fake_replicate
    status, _, body = raw_request(gateway, "GET", "/v1//account", {"x-portkey-provider": SLUG})
    assert status == 200, body
    assert replicate.requests[-1].path == "/v1/account"


def test_dots_inside_a_segment_are_an_ordinary_name(gateway, fake_replicate):
    _, replicate = fake_replicate
    raw_request(gateway, "GET", "/v1/models/owner/model.v1.2", {"x-portkey-provider": SLUG})
    assert replicate.requests[-1].path == "/v1/models/owner/model.v1.2"
