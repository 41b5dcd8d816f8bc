"""Request heads are bounded before anything authenticates them: a total size and a count, 431 with a
clear message beyond either, the refusal logged; stored header values are capped."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import httpx
import orjson

from modelport.store import LogFilter
from tests.harness import GatewayProcess
from tests.test_logging import wait_for_logs

LIMIT = 32 * 1024  # MODELPORT_MAX_HEADER_BYTES's default


def refused(response: httpx.Response) -> str:
    assert response.status_code == 431, response.text
    assert response.headers["x-portkey-gateway-exception"] == "true"
    assert response.headers["connection"] == "close"
    error = response.json()["error"]
    assert error["code"] == "headers_too_large"
    assert "MODELPORT_MAX_HEADER_BYTES" in error["message"]
    return error["message"]


def test_too_many_headers_are_refused_before_authentication_and_logged(gateway):
    headers = [(f"x-filler-{i}", "v") for i in range(150)]
    response = httpx.get(gateway.v1 + "/models", headers=headers, timeout=20)  # no gateway key: 401 otherwise
    assert "more than 100 headers" in refused(response)
    rows = wait_for_logs(gateway, LogFilter(status=431, q="/v1/models"), 1)
    row = next(r for r in rows if r["trace_id"] == response.headers["x-portkey-trace-id"])
    assert row["gateway_exception"] and "more than 100 headers" in row["error"]
    assert row["request_headers"] == {}  # what was refused is not stored


def test_twenty_thousand_headers_are_refused(gateway):
    """Sent from a socket: httpx takes 17 s to send 20,000 headers."""
    filler = b"".join(b"x-filler-%d: v\r\n" % i for i in range(20_000))
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n" + filler + b"\r\n")
        answer = b""
        while data := sock.recv(65536):  # the gateway closes once it has answered
            answer += data
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 431 ") and b"x-portkey-gateway-exception: true" in head
    assert "more than 32,768 bytes" in orjson.loads(body)["error"]["message"]


def test_a_head_over_the_size_limit_is_refused_and_logged_without_its_headers(gateway):
    response = httpx.get(gateway.v1 + "/models", headers={"x-big": "a" * (LIMIT + 1)}, timeout=20)
    assert "32,768 bytes" in refused(response)
    (row,) = wait_for_logs(gateway, LogFilter(trace_id=response.headers["x-portkey-trace-id"]), 1)
    assert row["status"] == 431 and row["request_headers"] == {}


def test_a_huge_header_is_refused_while_it_arrives(tmp_path):
    """50 MB of one header: answered 431 once the limit is passed, never held whole."""
    gateway = GatewayProcess(tmp_path / "data")
    with gateway:
        before = gateway.worker_memory_kb("VmHWM")
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
            def send() -> None:
                try:
                    sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-Big: ")
                    for _ in range(50 * 16):
                        sock.sendall(b"a" * 65536)
                except OSError:
                    pass  # the gateway closed the connection: what this test expects

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            answer = b""
            try:
                while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < 100:
                    data = sock.recv(65536)
                    if not data:
                        break
                    answer += data
            except ConnectionResetError:
                pass
            sender.join(20)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        head, body = answer.split(b"\r\n\r\n", 1)
        assert b"x-portkey-gateway-exception: true" in head.lower()
        assert orjson.loads(body)["error"]["code"] == "headers_too_large"
        assert gateway.worker_memory_kb("VmHWM") - before < 10 * 1024, "the worker held the header"
        assert httpx.get(gateway.url + "/health", timeout=5).status_code == 200
        deadline = time.monotonic() + 5
        while "refused a request" not in gateway.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "refused a request from 127.0.0.1" in gateway.log_text()


def test_a_head_within_the_limits_is_served_and_its_long_values_are_stored_capped(gateway):
    trace_id = "t-" + uuid.uuid4().hex
    headers = gateway.headers(**{"x-portkey-provider": "@openai-test", "x-portkey-trace-id": trace_id,
                                 "x-long": "b" * 5_000}, **{f"x-filler-{i}": "v" for i in range(90)})
    response = httpx.get(gateway.v1 + "/models", headers=headers, timeout=20)
    assert response.status_code == 200, response.text
    (row,) = wait_for_logs(gateway, LogFilter(trace_id=trace_id), 1)
    stored = row["request_headers"]["x-long"]
    assert stored == "b" * 1024 + "…[3,976 more characters not stored]"
    assert stored.startswith("b" * 1024) and len(stored) < 1100


def test_the_limits_are_settings(tmp_path):
    gateway = GatewayProcess(tmp_path / "data", settings={"require_api_key": False, "max_header_bytes": 65536,
                                                          "max_headers": 10})
    with gateway:
        assert httpx.get(gateway.url + "/health", headers={"x-big": "a" * 40_000}, timeout=10).status_code == 200
        message = refused(httpx.get(gateway.url + "/health", headers={f"x-{i}": "v" for i in range(10)}, timeout=10))
        assert "at most 65,536 bytes in at most 10 headers" in message


def test_a_refused_head_behind_a_request_still_being_answered_waits_for_that_answer(gateway):
    """Pipelined: the first request is answered first, then the connection closes; the gateway never
    writes a refusal over (or before) a response it is still sending."""
    before = gateway.log_text()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\nGET /health HTTP/1.1\r\nX-Big: " + b"a" * (LIMIT + 8192))
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1
    time.sleep(0.5)
    assert "Traceback" not in gateway.log_text()[len(before):]
