"""An upstream that misbehaves on purpose: one fault per request, named by its path or a header.

The fault is the path's second segment when the path starts with ``/fault/`` (so a base URL such as
``<url>/fault/stall_body/v1`` names it on every route, translated ones included, whose adapters
forward no header of the caller's), else the ``x-fault`` header, else ``ok``.

Raw asyncio sockets, not aiohttp: most of these faults are broken HTTP that no HTTP server library
would send. It runs as a process of its own (``FaultyUpstream``), so the gateway meets it over a
real loopback socket and a test or bench measures the gateway's processes without it.

    python -m tests.fakes.faulty [--port P]    # prints "listening <port>", then serves until killed

Faults (``FAULTS``); what the body looks like follows the path (``/messages``: Anthropic,
``/predictions``: Replicate, anything else: OpenAI):

    ok               a proper JSON answer (kept alive)
    accept_close     reads the request, closes without a byte
    stall_headers    reads the request, sends nothing until the gateway hangs up
    stall_body       a head with Content-Length larger than the part of the body sent, then silence
    stall_stream     an event stream that goes silent after a few events
    reset_before     reads the request, resets the connection (SO_LINGER 0) before any byte
    reset_mid        a head and part of the body, then a reset
    reset_stream     a few events of a stream, then a reset
    bad_status       a status line that is not HTTP
    bad_headers      a header line without a colon
    bad_length       ``Content-Length: many``
    endless_chunked  a chunked JSON body that never ends
    endless_sse      an event stream that never ends
    gzip_bomb        ``Content-Encoding: gzip`` of a zero run that opens to GZIP_BOMB_OPENS bytes
    oversize         a chunked JSON body OVERSIZE_BYTES long (past the gateway's WHOLE_LIMIT), then its end
    slow_drip        a proper JSON answer, DRIP_BYTES at a time every DRIP_SECONDS
    not_json         200, ``Content-Type: application/json``, and an HTML page

A refused connection is not a fault this server can play: ``closed_port()`` gives a port nothing
listens on. Kept-alive connections stay open between requests until ``close_idle()`` (SIGUSR1)
closes those waiting for their next request, as an upstream's idle timeout would: a timer instead
raced the gateway reusing a pooled connection at the moment it closed (aiohttp does not retry a POST
then; the gateway's 502 said "Can not write request body"), 3 requests in 100,000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

from modelport.gateway.respond import WHOLE_LIMIT

FAULTS = ("ok", "accept_close", "stall_headers", "stall_body", "stall_stream", "reset_before", "reset_mid",
          "reset_stream", "bad_status", "bad_headers", "bad_length", "endless_chunked", "endless_sse", "gzip_bomb",
          "oversize", "slow_drip", "not_json")
MiB = 1024 * 1024
GZIP_BOMB_OPENS = 64 * MiB  # twice the gateway's WHOLE_LIMIT: the gateway must not open all of it
OVERSIZE_BYTES = WHOLE_LIMIT + MiB
DRIP_BYTES, DRIP_SECONDS = 64, 0.01
IDLE_SECONDS = 120.0  # a kept-alive connection with no new request for this long is closed anyway
# The longest a stall or an endless body lasts if the gateway never hangs up: a gateway bug shows
# as a request that takes this long, and the fake still ends.
GIVE_UP_SECONDS = 300.0
MAX_HEAD = 64 * 1024
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    """A loopback port that refuses connections: bound once for a free number, then let go."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gzip_bomb() -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    zeros = bytes(MiB)
    return b"".join(packer.compress(zeros) for _ in range(GZIP_BOMB_OPENS // MiB)) + packer.flush()


def answer_body(path: str) -> bytes:
    if path.endswith("/messages"):
        return (b'{"id":"msg_fault","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022",'
                b'"content":[{"type":"text","text":"fine"}],"stop_reason":"end_turn","stop_sequence":null,'
                b'"usage":{"input_tokens":5,"output_tokens":1}}')
    if "/predictions" in path:
        return (b'{"id":"faultpred","model":"owner/model","version":"v1","status":"succeeded","output":"fine",'
                b'"urls":{"get":"https://api.replicate.com/v1/predictions/faultpred"},"metrics":{"predict_time":0.1}}')
    return (b'{"id":"chatcmpl-fault","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,'
            b'"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}],'
            b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}')


def stream_event(path: str) -> bytes:
    if path.endswith("/messages"):
        return (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                b'"delta":{"type":"text_delta","text":"more "}}\n\n')
    return (b'data: {"id":"chatcmpl-fault","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
            b'"choices":[{"index":0,"delta":{"content":"more "},"finish_reason":null}]}\n\n')


def stream_start(path: str) -> bytes:
    if path.endswith("/messages"):
        return (b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_fault","type":"message",'
                b'"role":"assistant","model":"claude-3-5-haiku-20241022","content":[],"usage":{"input_tokens":5,'
                b'"output_tokens":0}}}\n\nevent: content_block_start\ndata: {"type":"content_block_start","index":0,'
                b'"content_block":{"type":"text","text":""}}\n\n')
    return b""


class _Request:
    __slots__ = ("path", "fault", "keep_alive")

    def __init__(self, path: str, fault: str, keep_alive: bool) -> None:
        self.path, self.fault, self.keep_alive = path, fault, keep_alive


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """The next request's head, its body read and dropped; None when the connection ends first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    path = parts[1].split("?", 1)[0] if len(parts) > 1 else "/"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    try:
        if "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            await _drop_chunked(reader)
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        return None
    keep_alive = headers.get("connection", "").lower() != "close"
    return _Request(path, fault_named(path, headers.get("x-fault", "ok")), keep_alive)


def fault_named(path: str, header: str) -> str:
    segments = path.split("/")
    return segments[2] if len(segments) > 2 and segments[1] == "fault" else header


async def _drop_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return


def _head(status: str, headers: list[tuple[str, str]]) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _until_hung_up(reader: asyncio.StreamReader) -> None:
    """Wait, sending nothing, until the peer closes (or GIVE_UP_SECONDS)."""
    try:
        async with asyncio.timeout(GIVE_UP_SECONDS):
            while await reader.read(65536):
                pass
    except (TimeoutError, ConnectionError):
        pass


class FaultyServer:
    def __init__(self) -> None:
        self.bomb = _gzip_bomb()
        self.idle: set[asyncio.StreamWriter] = set()  # connections waiting for their next request

    def close_idle(self) -> None:
        for writer in self.idle:
            writer.transport.abort()
        self.idle.clear()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                self.idle.add(writer)
                try:
                    async with asyncio.timeout(IDLE_SECONDS):
                        request = await _read_request(reader)
                except TimeoutError:
                    request = None
                finally:
                    self.idle.discard(writer)
                if request is None:
                    break
                kept = await self.answer(request, reader, writer)
                if not (kept and request.keep_alive):
                    break
        except (ConnectionError, TimeoutError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()

    async def answer(self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Play the request's fault; True when the connection is still good for another request."""
        fault, path = request.fault, request.path
        json_head = [("Content-Type", "application/json")]
        if fault == "ok":
            body = answer_body(path)
            writer.write(_head("200 OK", json_head + [("Content-Length", str(len(body)))]) + body)
            await writer.drain()
            return True
        if fault == "accept_close":
            return False
        if fault == "stall_headers":
            await _until_hung_up(reader)
            return False
        if fault in ("stall_body", "reset_mid"):
            body = answer_body(path)
            writer.write(_head("200 OK", json_head + [("Content-Length", str(len(body) * 4))]) + body)
            await writer.drain()
            if fault == "reset_mid":
                _reset(writer)
            else:
                await _until_hung_up(reader)
            return False
        if fault in ("stall_stream", "reset_stream", "endless_sse"):
            await self._stream(writer, reader, path, fault)
            return False
        if fault == "reset_before":
            _reset(writer)
            return False
        if fault == "bad_status":
            writer.write(b"HELLO THERE\r\nContent-Length: 2\r\n\r\nhi")
            await writer.drain()
            return False
        if fault == "bad_headers":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nthis line has no colon\r\n"
                         b"Content-Length: 2\r\n\r\n{}")
            await writer.drain()
            return False
        if fault == "bad_length":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: many\r\n\r\n{}")
            await writer.drain()
            return False
        if fault == "endless_chunked":
            await self._chunked(writer, None)
            return False
        if fault == "oversize":
            await self._chunked(writer, OVERSIZE_BYTES)
            return True
        if fault == "gzip_bomb":
            writer.write(_head("200 OK", json_head + [("Content-Encoding", "gzip"), ("Content-Length", str(len(self.bomb)))]))
            writer.write(self.bomb)
            await writer.drain()
            return True
        if fault == "slow_drip":
            body = answer_body(path)
            writer.write(_head("200 OK", json_head + [("Content-Length", str(len(body)))]))
            for start in range(0, len(body), DRIP_BYTES):
                await asyncio.sleep(DRIP_SECONDS)
                writer.write(body[start:start + DRIP_BYTES])
                await writer.drain()
            return True
        if fault == "not_json":
            body = b"<html><body>502 Bad Gateway (from a proxy in front of the provider)</body></html>"
            writer.write(_head("200 OK", json_head + [("Content-Length", str(len(body)))]) + body)
            await writer.drain()
            return True
        body = f'{{"error": "no fault named {fault[:64]}"}}'.encode()
        writer.write(_head("400 Bad Request", json_head + [("Content-Length", str(len(body)))]) + body)
        await writer.drain()
        return True

    async def _stream(self, writer: asyncio.StreamWriter, reader: asyncio.StreamReader, path: str, fault: str) -> None:
        """An event stream, chunked as real providers send them, so a stream cut off shows as one."""
        writer.write(_head("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                                      ("Transfer-Encoding", "chunked")]))
        if start := stream_start(path):
            writer.write(_chunk(start))
        event = stream_event(path)
        if fault != "endless_sse":
            writer.write(_chunk(event * 3))
            await writer.drain()
            if fault == "reset_stream":
                _reset(writer)
            else:
                await _until_hung_up(reader)
            return
        async with asyncio.timeout(GIVE_UP_SECONDS):
            while True:  # until the gateway hangs up (the write fails) or GIVE_UP_SECONDS
                writer.write(_chunk(event * 16))
                await writer.drain()
                await asyncio.sleep(0.002)

    async def _chunked(self, writer: asyncio.StreamWriter, size: int | None) -> None:
        """A chunked JSON body of ``size`` bytes, or one that never ends (``None``)."""
        writer.write(_head("200 OK", [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")]))
        piece = b"x" * (64 * 1024)
        chunk = _chunk(piece)
        writer.write(b'a\r\n{"data": "\r\n')
        sent = 0
        async with asyncio.timeout(GIVE_UP_SECONDS):
            while size is None or sent < size:
                writer.write(chunk)
                sent += len(piece)
                await writer.drain()
        writer.write(b'2\r\n"}\r\n0\r\n\r\n')
        await writer.drain()


async def _main(port: int) -> None:
    server = FaultyServer()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, server.close_idle)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", port, backlog=1024, reuse_address=True)
    print(f"listening {listener.sockets[0].getsockname()[1]}", flush=True)
    async with listener:
        await listener.serve_forever()


class FaultyUpstream:
    """``python -m tests.fakes.faulty`` as a child process; ``url`` is its origin. A context manager."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> "FaultyUpstream":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_SOURCE_ROOT), str(_SOURCE_ROOT / "src"),
                                                                         os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen([sys.executable, "-m", "tests.fakes.faulty"], env=env, stdout=subprocess.PIPE,
                                        cwd=_SOURCE_ROOT)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"the faulty upstream did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def close_idle(self) -> None:
        """Close the connections waiting for a next request (the gateway's pooled ones), then return."""
        os.kill(self.pid, signal.SIGUSR1)
        time.sleep(0.5)  # the fake closes them, the gateway sees them go

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def __enter__(self) -> "FaultyUpstream":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="an upstream that misbehaves on purpose (tests/fakes/faulty.py)")
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: any free one)")
    try:
        asyncio.run(_main(parser.parse_args().port))
    except KeyboardInterrupt:
        pass
