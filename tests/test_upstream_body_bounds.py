"""Upstream bodies the gateway must read (to rewrite URLs, to translate) are held to a bound: a
decompression bomb and an endless chunked body are relayed untouched, and the reason recorded; a
translated body past the bound is a 502. The worker's peak memory is the proof."""

from __future__ import annotations

import gzip
import time
import uuid

import httpx
import pytest
from aiohttp import web

from modelport.store import LogFilter
from tests.conftest import REPLICATE_TOKEN
from tests.fakes.server import FakeServer
from tests.harness import GatewayProcess
from tests.test_logging import wait_for_logs

MiB = 1024 * 1024
BOMB_SIZE = 200 * MiB
BOMB = gzip.compress(b'{"urls": "' + b" " * (BOMB_SIZE - 20) + b'"}', compresslevel=9)
CHUNKED_SIZE = 200 * MiB
STREAM_SIZE = 40 * MiB


async def bomb(request: web.Request) -> web.Response:
    return web.Response(body=BOMB, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})


async def endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(b'{"urls": "')
    chunk = b"x" * MiB
    for _ in range(CHUNKED_SIZE // MiB):
        await response.write(chunk)
    await response.write(b'"}')
    await response.write_eof()
    return response


async def endless_event(request: web.Request) -> web.StreamResponse:
    """An event stream whose first line never ends: 40 MiB of one data line."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"event: content_block_delta\ndata: ")
    chunk = b"x" * 65536
    for _ in range(STREAM_SIZE // len(chunk)):
        await response.write(chunk)
    await response.write_eof()
    return response


@pytest.fixture(scope="module")
def heavy_upstream():
    app = web.Application()
    app.router.add_get("/v1/predictions/bomb", bomb)
    app.router.add_get("/v1/predictions/endless", endless)
    app.router.add_post("/v1/messages", endless)
    app.router.add_post("/v2/messages", endless_event)  # another base URL, so another route
    with FakeServer(app) as server:
        yield server


@pytest.fixture
def gateway(tmp_path):
    """A gateway of its own per test: the peak memory measured is this test's."""
    with GatewayProcess(tmp_path / "data", settings={"require_api_key": False, "allow_private_hosts": True}) as process:
        yield process


def replicate_via(upstream: FakeServer, trace_id: str) -> dict[str, str]:
    return {"x-portkey-provider": "replicate", "x-portkey-custom-host": upstream.url + "/v1",
            "authorization": f"Bearer {REPLICATE_TOKEN}", "x-portkey-trace-id": trace_id}


def relayed_size(gateway: GatewayProcess, path: str, headers: dict[str, str]) -> tuple[int, httpx.Headers]:
    """Bytes of the body as they came over the wire (not decompressed), read as a stream."""
    size = 0
    with httpx.stream("GET", gateway.v1 + path, headers=headers, timeout=60) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            size += len(chunk)
        return size, response.headers


def test_a_decompression_bomb_is_relayed_untouched_without_holding_it_open(gateway, heavy_upstream):
    before = gateway.worker_memory_kb("VmHWM")
    trace_id = "t-" + uuid.uuid4().hex
    size, headers = relayed_size(gateway, "/predictions/bomb", replicate_via(heavy_upstream, trace_id))
    assert size == len(BOMB) and headers["content-encoding"] == "gzip"
    assert (gateway.worker_memory_kb("VmHWM") - before) / 1024 < 80, "the worker opened the bomb"
    (row,) = wait_for_logs(gateway, LogFilter(trace_id=trace_id), 1)
    assert "relayed without rewriting its URLs: the body opens to more than 33,554,432 bytes" in row["error"]


def test_an_endless_chunked_body_is_relayed_without_being_held(gateway, heavy_upstream):
    before = gateway.worker_memory_kb("VmHWM")
    trace_id = "t-" + uuid.uuid4().hex
    size, _ = relayed_size(gateway, "/predictions/endless", replicate_via(heavy_upstream, trace_id))
    assert size == CHUNKED_SIZE + len(b'{"urls": ""}')
    assert (gateway.worker_memory_kb("VmHWM") - before) / 1024 < 80, "the worker held the body"
    (row,) = wait_for_logs(gateway, LogFilter(trace_id=trace_id), 1)
    assert "relayed without rewriting its URLs: the body is larger than 33,554,432 bytes" in row["error"]


def test_a_body_to_translate_past_the_bound_is_a_502(gateway, heavy_upstream):
    """Anthropic's adapter translates: a 200 MiB answer cannot be, nor relayed in its place."""
    before = gateway.worker_memory_kb("VmHWM")
    response = httpx.post(gateway.v1 + "/chat/completions", timeout=60, json={"model": "claude-x", "messages": [
        {"role": "user", "content": "hi"}]}, headers={"x-portkey-provider": "anthropic", "authorization": "Bearer sk-ant-test",
                                                     "x-portkey-custom-host": heavy_upstream.url + "/v1"})
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_response_too_large"
    assert (gateway.worker_memory_kb("VmHWM") - before) / 1024 < 80


def test_a_stream_event_that_never_ends_is_cut_off_not_held(gateway, heavy_upstream):
    """Translating a stream, the gateway holds an event until its end: past 8 MiB it ends the stream
    (truncated, as a broken upstream would) and records why."""
    before = gateway.worker_memory_kb("VmHWM")
    trace_id = "t-" + uuid.uuid4().hex
    started = time.monotonic()
    with httpx.stream("POST", gateway.v1 + "/chat/completions", timeout=60, json={
            "model": "claude-x", "stream": True, "messages": [{"role": "user", "content": "hi"}]}, headers={
            "x-portkey-provider": "anthropic", "authorization": "Bearer sk-ant-test", "x-portkey-trace-id": trace_id,
            "x-portkey-custom-host": heavy_upstream.url + "/v2"}) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):  # no final chunk: the client sees it was cut
            for _ in response.iter_raw():
                pass
    assert time.monotonic() - started < 10
    assert (gateway.worker_memory_kb("VmHWM") - before) / 1024 < 30, "the worker held the event"
    (row,) = wait_for_logs(gateway, LogFilter(trace_id=trace_id), 1)
    assert "an event of more than 8,388,608 bytes" in row["error"]
