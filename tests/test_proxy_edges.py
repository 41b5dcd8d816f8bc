"""The proxy route when things go wrong: slow, dead or broken upstreams, clients that leave, bad input."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest
from aiohttp import web

from tests.fakes.server import FakeServer

SLUG = {"x-portkey-provider": "@replicate-test"}


def gateway_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["x-portkey-gateway-exception"] == "true"
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] and error["code"]
    return error["message"]


def test_unreachable_upstream_is_a_502(gateway):
    response = httpx.get(gateway.v1 + "/account", headers=gateway.headers(**{"x-portkey-provider": "@replicate-down"}))
    message = gateway_error(response, 502)
    assert "could not connect to replicate" in message
    assert "ConnectionKey" not in message and "ssl:" not in message  # aiohttp's internals tell a caller nothing


def test_slow_upstream_past_the_request_timeout_is_a_504(gateway, fake_replicate):
    _, replicate = fake_replicate
    replicate.delay_next(3, path="/v1/account")
    started = time.monotonic()
    response = httpx.get(gateway.v1 + "/account", headers=gateway.headers(**SLUG, **{"x-portkey-request-timeout": "300"}), timeout=10)
    assert "within 0.3 s" in gateway_error(response, 504)
    assert time.monotonic() - started < 2


def test_upstream_reset_mid_stream_truncates_the_clients_stream(gateway, fake_replicate):
    _, replicate = fake_replicate
    created = httpx.post(gateway.v1 + "/models/test/llm/predictions", headers=gateway.headers(**SLUG),
                         json={"input": {"prompt": "a b c d e f g h"}, "stream": True}).json()
    replicate.reset_next(path="/v1/streams/", after_events=2)
    received = b""
    with pytest.raises(httpx.HTTPError):
        with httpx.stream("GET", created["urls"]["stream"], timeout=10) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                received += chunk
    assert b"event: done" not in received


@pytest.mark.parametrize(
    "header, value, message",
    [
        ("x-portkey-metadata", "{not json", "x-portkey-metadata must be a JSON object"),
        ("x-portkey-metadata", "[1, 2]", "x-portkey-metadata must be a JSON object"),
        ("x-portkey-request-timeout", "soon", "x-portkey-request-timeout must be a number"),
        ("x-portkey-forward-headers", "x-portkey-forward-headers", "cannot name itself"),
        ("x-portkey-config", "{\"strategy\": 1", "x-portkey-config is not valid JSON"),
        ("x-portkey-config", "pc-does-not-exist", "no saved config"),
    ],
)
def test_malformed_portkey_headers_are_clear_400s(gateway, header, value, message):
    response = httpx.get(gateway.v1 + "/account", headers=gateway.headers(**SLUG, **{header: value}))
    assert message in gateway_error(response, 400)


def test_missing_and_unknown_providers_are_400s(gateway):
    assert "no provider chosen" in gateway_error(httpx.get(gateway.v1 + "/account", headers=gateway.headers()), 400)
    unknown = httpx.get(gateway.v1 + "/account", headers=gateway.headers(**{"x-portkey-provider": "not-a-provider"}))
    assert "unknown provider 'not-a-provider'" in gateway_error(unknown, 400)
    missing = httpx.get(gateway.v1 + "/account", headers=gateway.headers(**{"x-portkey-provider": "@no-such-slug"}))
    assert "no stored provider '@no-such-slug'" in gateway_error(missing, 400)


def test_gateway_key_is_required_and_checked(gateway):
    assert "gateway API key is required" in gateway_error(httpx.get(gateway.v1 + "/account", headers=SLUG), 401)
    wrong = httpx.get(gateway.v1 + "/account", headers={**SLUG, "x-portkey-api-key": "mp-wrong"})
    assert "invalid" in gateway_error(wrong, 401)


def test_a_stored_credential_never_goes_to_a_caller_chosen_host(gateway):
    response = httpx.get(gateway.v1 + "/account", headers=gateway.headers(**SLUG, **{"x-portkey-custom-host": "https://example.com/v1"}))
    assert "cannot be used with a stored provider" in gateway_error(response, 400)


@pytest.mark.parametrize("host", ["http://127.0.0.1:1/v1", "http://10.0.0.8/v1", "http://[::1]:80/v1",
                                  "http://169.254.169.254/latest", "http://localhost:8080/v1", "file:///etc/passwd"])
def test_caller_chosen_private_hosts_are_refused(gateway, host):
    headers = gateway.headers(**{"x-portkey-provider": "replicate", "x-portkey-custom-host": host, "Authorization": "Bearer r8_mine"})
    message = gateway_error(httpx.get(gateway.v1 + "/account", headers=headers), 400)
    assert "custom host" in message


def test_a_body_over_the_limit_is_refused_before_it_is_read(gateway):
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(
            b"POST /v1/files HTTP/1.1\r\nHost: x\r\nx-portkey-api-key: " + gateway.admin_key.encode()
            + b"\r\nx-portkey-provider: @replicate-test\r\nContent-Length: 999999999999\r\n\r\n"
        )
        sock.settimeout(5)
        reply = b""
        while b"}}" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"x-portkey-gateway-exception: true" in reply
    assert b"MODELPORT_MAX_BODY_BYTES" in reply


class SlowStream:
    """An upstream that streams one SSE event every 50 ms and notes when its client goes away."""

    def __init__(self) -> None:
        self.sent = 0
        self.client_left = asyncio.Event()
        self.finished = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for i in range(100):
                await response.write(f"data: {i}\n\n".encode())
                self.sent += 1
                await asyncio.sleep(0.05)
            self.finished = True
        except (ConnectionError, asyncio.CancelledError):  # aiohttp raises ClientConnectionResetError
            self.client_left.set()
            return response
        return response


@pytest.fixture
def slow_stream():
    slow = SlowStream()
    app = web.Application()
    app.router.add_get("/v1/events", slow.handle)
    with FakeServer(app) as upstream:
        headers = {"x-portkey-provider": "openai", "x-portkey-custom-host": upstream.url + "/v1", "Authorization": "Bearer sk-x"}
        yield slow, upstream, headers


def test_client_disconnect_cancels_the_upstream_request(open_gateway, slow_stream):
    slow, upstream, headers = slow_stream
    with httpx.stream("GET", open_gateway.v1 + "/events", headers=headers, timeout=10) as response:
        first = next(response.iter_raw())
        assert first.startswith(b"data: 0")
    upstream.call(asyncio.wait_for(slow.client_left.wait(), timeout=5))
    assert not slow.finished and slow.sent < 60


def test_sse_is_relayed_event_by_event_without_delay(open_gateway, slow_stream):
    _, _, headers = slow_stream
    with httpx.stream("GET", open_gateway.v1 + "/events", headers=headers, timeout=10) as response:
        chunks = response.iter_raw()
        assert next(chunks) == b"data: 0\n\n"  # alone: nothing held back to batch with the next event
        first_at = time.monotonic()
        assert next(chunks) == b"data: 1\n\n"
        gap = time.monotonic() - first_at
    assert 0.02 < gap < 0.5  # paced by the upstream's 50 ms, not by the gateway


def test_an_upstream_silent_past_the_read_timeout_is_a_504(tmp_path, fake_replicate):
    from tests.conftest import REPLICATE_TOKEN, replicate_provider
    from tests.harness import GatewayProcess

    server, replicate = fake_replicate
    with GatewayProcess(tmp_path / "data", providers=[replicate_provider(server.url)], settings={"upstream_timeout": 0.5},
                        env={"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN}) as process:
        replicate.delay_next(3, path="/v1/account")
        response = httpx.get(process.v1 + "/account", headers=process.headers(**SLUG), timeout=10)
    assert "sent nothing for 0.5 s" in gateway_error(response, 504)


# --- headers and errors at the edge ---------------------------------------------------------------


@pytest.mark.parametrize("path, provider", [("/account", "@replicate-test"), ("/chat/completions", "@openai-test")])
def test_a_proxied_response_carries_one_date_header(gateway, path, provider):
    # Both the provider and the gateway's HTTP server date a response; HTTP allows only one Date.
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    headers = gateway.headers(**{"x-portkey-provider": provider})
    if path == "/account":
        response = httpx.get(gateway.v1 + path, headers=headers)
    else:
        response = httpx.post(gateway.v1 + path, headers=headers, json=chat, timeout=20)
    assert response.status_code == 200, response.text
    assert len(response.headers.get_list("date")) == 1, response.headers.raw


@pytest.mark.parametrize(
    "header, value",
    [
        ("x-portkey-metadata", "{not json"),
        ("x-portkey-request-timeout", "soon"),
        ("x-portkey-config", "{\"strategy\": 1"),
        ("x-portkey-provider", "not-a-provider"),
    ],
)
def test_a_header_error_echoes_and_logs_the_callers_trace_id(gateway, header, value):
    from tests.test_logging import one_log, trace

    trace_id = trace()
    headers = {**SLUG, "x-portkey-trace-id": trace_id, header: value}
    response = httpx.get(gateway.v1 + "/account", headers=gateway.headers(**headers))
    gateway_error(response, 400)
    assert response.headers["x-portkey-trace-id"] == trace_id
    row = one_log(gateway, trace_id)
    assert row["status"] == 400 and row["gateway_exception"] is True


def test_a_header_error_without_a_trace_id_gets_a_generated_one(gateway):
    from tests.test_logging import one_log

    response = httpx.get(gateway.v1 + "/account", headers=gateway.headers(**SLUG, **{"x-portkey-metadata": "[1]"}))
    gateway_error(response, 400)
    trace_id = response.headers["x-portkey-trace-id"]
    assert trace_id
    assert one_log(gateway, trace_id)["status"] == 400


@pytest.fixture(scope="module")
def small_body_gateway(tmp_path_factory, fake_replicate, fake_openai):
    from tests.conftest import OPENAI_KEY, REPLICATE_TOKEN, replicate_provider, stored
    from tests.harness import GatewayProcess

    providers = [replicate_provider(fake_replicate[0].url),
                 stored("openai-test", "openai", "TEST_OPENAI_KEY", fake_openai[0].url + "/v1")]
    process = GatewayProcess(tmp_path_factory.mktemp("small") / "data", providers=providers,
                             settings={"max_body_bytes": 64 * 1024},
                             env={"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN, "TEST_OPENAI_KEY": OPENAI_KEY})
    with process:
        yield process


def chunked(total: int, piece: int = 16 * 1024):
    """A body sent with Transfer-Encoding: chunked (httpx does so for a generator)."""
    def pieces():
        for _ in range(total // piece):
            yield b"x" * piece
    return pieces()


@pytest.mark.parametrize("path, provider", [("/files", "@replicate-test"), ("/predictions", "@replicate-test"),
                                            ("/chat/completions", "@openai-test")])
@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_an_oversized_body_is_a_413_whatever_its_framing(small_body_gateway, path, provider, framing):
    size = 256 * 1024
    content = chunked(size) if framing == "chunked" else b"x" * size
    headers = small_body_gateway.headers(**{"x-portkey-provider": provider, "content-type": "application/octet-stream"})
    response = httpx.post(small_body_gateway.v1 + path, headers=headers, content=content, timeout=20)
    message = gateway_error(response, 413)
    assert response.json()["error"]["code"] == "payload_too_large"
    assert "MODELPORT_MAX_BODY_BYTES" in message
    assert "aiohttp" not in message and "object at" not in message and "Error" not in message


def test_every_gateway_error_carries_a_trace_id(gateway):
    from tests.test_logging import trace

    trace_id = trace()
    control = httpx.get(gateway.v1 + "/api-keys", headers=gateway.headers(**{"x-portkey-trace-id": trace_id,
                                                                            "x-portkey-metadata": "[1]"}))
    gateway_error(control, 400)
    assert control.headers["x-portkey-trace-id"] == trace_id
    for response in (httpx.get(gateway.v1 + "/streams/not-a-token"), httpx.get(gateway.url + "/nowhere")):
        gateway_error(response, 404)
        assert response.headers["x-portkey-trace-id"]
