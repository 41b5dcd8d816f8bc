"""Clients that stop half-way do not keep their connections: a head not finished within
MODELPORT_HEADER_TIMEOUT gets a 408 and is closed, a body silent for MODELPORT_BODY_TIMEOUT is
disconnected (and recorded as 499), while slow but steady clients are served."""

from __future__ import annotations

import socket
import time

import httpx
import orjson
import pytest

from modelport.store import LogFilter
from tests.harness import GatewayProcess
from tests.test_logging import wait_for_logs


@pytest.fixture(scope="module")
def impatient_gateway(tmp_path_factory):
    process = GatewayProcess(tmp_path_factory.mktemp("impatient") / "data",
                             settings={"header_timeout": 1.0, "body_timeout": 1.0, "allow_private_hosts": True})
    with process:
        yield process


def answer_within(sock: socket.socket, seconds: float) -> bytes:
    """Everything the gateway sends until it closes the connection, which must happen in ``seconds``."""
    sock.settimeout(seconds)
    answer = b""
    try:
        while data := sock.recv(65536):
            answer += data
    except socket.timeout:
        raise AssertionError(f"the connection was still open after {seconds} s; got {answer[:200]!r}") from None
    except ConnectionResetError:
        pass
    return answer


def one_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length, read whole (the connection then stays open: keep-alive)."""
    sock.settimeout(5)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, body = answer.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_twenty_half_sent_heads_are_answered_408_and_closed(impatient_gateway):
    socks = [socket.create_connection(("127.0.0.1", impatient_gateway.port)) for _ in range(20)]
    started = time.monotonic()
    for sock in socks:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-Part: ")  # and nothing more
    for sock in socks:
        answer = answer_within(sock, 5)
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 408 ") and b"x-portkey-gateway-exception: true" in head
        assert "MODELPORT_HEADER_TIMEOUT" in orjson.loads(body)["error"]["message"]
        sock.close()
    assert time.monotonic() - started < 4


def test_a_connection_that_sends_nothing_is_closed(impatient_gateway):
    with socket.create_connection(("127.0.0.1", impatient_gateway.port)) as sock:
        assert answer_within(sock, 5) == b""


def test_a_half_sent_body_is_disconnected_and_recorded(impatient_gateway):
    trace_id = f"t-half-body-{time.time_ns()}"
    with socket.create_connection(("127.0.0.1", impatient_gateway.port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                     b"x-portkey-api-key: " + impatient_gateway.admin_key.encode() + b"\r\nx-portkey-provider: openai\r\n"
                     b"x-portkey-trace-id: " + trace_id.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"model\": ")
        assert answer_within(sock, 5) == b""
    (row,) = wait_for_logs(impatient_gateway, LogFilter(trace_id=trace_id), 1)
    assert row["status"] == 499
    assert "MODELPORT_BODY_TIMEOUT" in impatient_gateway.log_text()


def test_a_slow_but_steady_client_is_served(impatient_gateway):
    with socket.create_connection(("127.0.0.1", impatient_gateway.port)) as sock:
        for part in (b"GET /health HTTP/1.1\r\n", b"Host: gw\r\n", b"X-Slow: yes\r\n", b"\r\n"):
            sock.sendall(part)
            time.sleep(0.3)  # 0.9 s in all: within the 1 s the head may take
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_a_slow_but_steady_body_is_read_whole(impatient_gateway):
    """A body sent over 2.4 s, a part every 0.3 s: no silence reaches the 1 s body timeout."""
    body = b'{"model": "gpt-4o-mini", "messages": []}'
    with socket.create_connection(("127.0.0.1", impatient_gateway.port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                     b"x-portkey-api-key: " + impatient_gateway.admin_key.encode() + b"\r\nx-portkey-provider: openai\r\n"
                     b"x-portkey-custom-host: http://127.0.0.1:9/v1\r\nAuthorization: Bearer sk-test\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        for i in range(0, len(body), 5):
            time.sleep(0.3)
            sock.sendall(body[i:i + 5])
        answer = one_response(sock)
    assert answer.startswith(b"HTTP/1.1 502 "), answer[:300]  # read whole, then nothing listens upstream
    assert b"could not connect to openai" in answer


def test_a_keep_alive_connection_between_requests_is_not_timed_out_as_a_head(impatient_gateway):
    with httpx.Client(base_url=impatient_gateway.url, timeout=5) as client:
        assert client.get("/health").status_code == 200
        time.sleep(2.5)  # idle, past the head timeout: uvicorn's keep-alive (30 s) governs here
        assert client.get("/health").status_code == 200
