"""The gateway writes its own origin into rewritten Replicate responses: MODELPORT_PUBLIC_URL when set,
else the request's Host, which must be a valid host[:port]; never anything that can break the JSON."""

from __future__ import annotations

import http.client
import json
from typing import Iterator
from urllib.parse import urlsplit

import orjson
import pytest

from modelport.providers.rewrite import UrlRewrite
from tests.conftest import REPLICATE_TOKEN, replicate_provider
from tests.harness import GatewayProcess

CREATE = "/v1/models/test/echo/predictions"
BODY = json.dumps({"input": {"text": "hi"}}).encode()


def post_with_host(gateway: GatewayProcess, host: str) -> tuple[int, bytes]:
    origin = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(origin.hostname, origin.port, timeout=20)
    try:
        connection.putrequest("POST", CREATE, skip_host=True)
        for name, value in {**gateway.headers(**{"x-portkey-provider": "@replicate-test"}), "Host": host,
                            "content-type": "application/json", "content-length": str(len(BODY))}.items():
            connection.putheader(name, value)
        connection.endheaders(BODY)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def public_gateway(tmp_path_factory: pytest.TempPathFactory, fake_replicate) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("public") / "data",
                             settings={"public_url": "https://models.example.com/gw"},
                             providers=[replicate_provider(fake_replicate[0].url)],
                             env={"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN})
    with process:
        yield process


@pytest.mark.parametrize("host", ['evil","injected":"yes', "evil\\", "a b", "x/y", "[::1", "h:port"])
def test_a_host_that_is_not_host_port_is_refused_before_anything_is_created(gateway, fake_replicate, host):
    seen = len(fake_replicate[1].requests)
    status, body = post_with_host(gateway, host)
    assert status == 400, body
    assert json.loads(body)["error"]["code"] == "invalid_host"
    assert len(fake_replicate[1].requests) == seen


@pytest.mark.parametrize("host", ["gw.example:8443", "10.0.0.7", "[2001:db8::1]:8080"])
def test_a_valid_host_is_the_origin_of_rewritten_urls(gateway, host):
    status, body = post_with_host(gateway, host)
    assert status == 201, body
    prediction = json.loads(body)
    assert prediction["urls"]["get"] == f"http://{host}/v1/predictions/{prediction['id']}"


def test_the_operators_public_url_wins_over_any_host(public_gateway):
    status, body = post_with_host(public_gateway, 'evil","injected":"yes')
    assert status == 201, body
    prediction = json.loads(body)
    assert prediction["urls"]["get"] == f"https://models.example.com/gw/v1/predictions/{prediction['id']}"
    assert "injected" not in prediction


def test_what_the_rewrite_writes_into_json_is_escaped():
    body = b'{"id": "p1", "urls": {"get": "https://up.example/v1/predictions/p1", "stream": "https://s.example/x"}}'
    rewritten = UrlRewrite(stream_field="stream").body(body, "https://up.example/v1", 'https://q"x\\y/v1',
                                                       lambda url, owner: 'https://q"x/streams/t')
    parsed = orjson.loads(rewritten)
    assert parsed["urls"]["get"] == 'https://q"x\\y/v1/predictions/p1'
    assert parsed["urls"]["stream"] == 'https://q"x/streams/t'
