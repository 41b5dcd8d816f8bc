"""An upstream that breaks (tests/fakes/faulty.py) gets the client a gateway error it can act on, or,
once the answer is on its way, a response cut off; never a plain 500. A client that leaves a stream
the gateway translates stops the upstream read."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests import fault_mix
from tests.fakes.faulty import FaultyUpstream
from tests.harness import GatewayProcess


@pytest.fixture(scope="module")
def upstream():
    with FaultyUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, upstream):
    settings = fault_mix.gateway_settings()
    with GatewayProcess(tmp_path_factory.mktemp("faults") / "data", settings=settings,
                        providers=[fault_mix.stored_provider(upstream.url)],
                        env={fault_mix.STORED_SECRET_ENV: "sk-faults-stored"}) as process:
        yield process


def call(gateway: GatewayProcess, upstream: FaultyUpstream, route: str, fault: str) -> httpx.Response:
    spec = fault_mix.ROUTES[route]
    headers = {**spec.headers, "x-portkey-custom-host": f"{upstream.url}/fault/{fault}/v1"}
    return httpx.post(gateway.url + spec.path, headers=headers, json=spec.body, timeout=fault_mix.DEADLINE_S)


def assert_gateway_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["x-portkey-gateway-exception"] == "true"
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


@pytest.mark.parametrize("route", ["chat", "proxy", "replicate", "claude"])
def test_a_body_cut_short_before_its_length_is_a_502(gateway, upstream, route):
    """The upstream resets the connection after part of a body whose length the gateway reads whole."""
    response = call(gateway, upstream, route, "reset_mid")
    assert_gateway_error(response, 502, "bad_upstream_response")
    assert "broke off" in response.json()["error"]["message"]


@pytest.mark.parametrize("route", ["chat", "claude"])
def test_a_body_that_stalls_before_its_length_is_a_504(gateway, upstream, route):
    started = time.monotonic()
    response = call(gateway, upstream, route, "stall_body")
    assert_gateway_error(response, 504, "upstream_timeout")
    assert time.monotonic() - started < fault_mix.UPSTREAM_TIMEOUT_S + 2


def test_a_compressed_body_to_translate_is_opened_within_the_bound(gateway, upstream):
    """A gzip bomb on a translated route: the gateway opens at most its bound, then a 502 saying so."""
    response = call(gateway, upstream, "claude", "gzip_bomb")
    assert_gateway_error(response, 502, "upstream_response_too_large")


def test_a_body_to_translate_that_is_not_the_providers_json_is_a_502(gateway, upstream):
    """A proxy in front of the provider answers 200 with an HTML page: once a 500."""
    response = call(gateway, upstream, "claude", "not_json")
    assert_gateway_error(response, 502, "untranslatable_response")


def test_leaving_a_translated_endless_stream_stops_the_upstream_read(gateway, upstream):
    """The server's send to a client gone returns as if sent: without a watcher, the gateway read an
    endless translated stream on for as long as the upstream sent it, and its record never came."""
    trace = f"fs-leave-{time.monotonic_ns()}"
    spec = fault_mix.ROUTES["claude_stream"]
    headers = {**spec.headers, "x-portkey-custom-host": f"{upstream.url}/fault/endless_sse/v1", "x-portkey-trace-id": trace}

    async def read_a_little_then_leave() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        body = httpx.Request("POST", gateway.url + spec.path, headers=headers, json=spec.body)
        head = [f"POST {spec.path} HTTP/1.1", f"host: 127.0.0.1:{gateway.port}",
                *(f"{k}: {v}" for k, v in body.headers.items() if k != "host")]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body.read())
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(16 * 1024)
        writer.transport.abort()

    asyncio.run(read_a_little_then_leave())
    deadline = time.monotonic() + 10
    while True:
        rows = httpx.get(gateway.v1 + "/logs", params={"trace_id": trace}, headers=gateway.headers(), timeout=10).json()["data"]
        if rows:
            break
        assert time.monotonic() < deadline, "no record: the gateway is still reading the endless stream"
        time.sleep(0.2)
    assert rows[0]["status"] == 499
