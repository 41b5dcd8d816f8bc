"""The log service: one process beside the workers of ``modelport serve`` that enriches, prices and
stores every worker's log records (``LogWriter``: batching, spill, replay, the prediction ledger),
runs providers' autopoll (Replicate's) once for the whole gateway, owns the Prometheus metrics, and exports the
OpenTelemetry spans of every request when ``otel_endpoint`` is set (logs/otel.py).

Why a process and not the writer thread it replaces: enrichment (~35 µs of Python a record) and SQLite
inserts (~25 µs) on a thread inside each worker held the GIL the worker's event loop needs; on a 2-core
box throughput with logging on was ~40 % of a bare pass-through. A worker now only encodes its records
and writes them to a socket (``LogShipper``, logs/shipper.py), and there is one SQLite writer.

Wire protocol. A Unix stream socket at a Linux abstract address, ``"\\0modelport-log-<supervisor
pid>-<random>"`` (no path-length limit, no file to clean up), handed to workers as
``settings.log_service_address``. Abstract sockets have no file permissions, so the service serves
only peers of its own user (SO_PEERCRED): a frame from anyone else could crash it (marshal).
A connection opens with one byte:

    R   a worker's record stream.
        worker → service: frames, each a 4-byte big-endian length and ``marshal`` blob of a list
                          of records as plain tuples (``records_to_wire`` in logs/record.py).
        service → worker: 4-byte big-endian counts of the next frames whose records are now in the
                          store or the service's spill file. A worker keeps a frame until it is
                          counted and spills it if the connection drops first; replay skips log ids
                          already stored, so a frame that arrives twice is logged once.
    M   "send me the rendered Prometheus metrics text, then close".

Lifecycle (server/supervisor.py). Ready is reported on a pipe once listening (or the reason it could
not start). SIGTERM, sent by the supervisor after its workers have exited, or the supervisor's death
(PR_SET_PDEATHSIG, and a parent-pid check as a fallback): stop listening, read every open connection
to EOF (bounded), drain the writer into the store (or the spill file if the store is locked), exit 0.
If this process dies, the supervisor starts another at the same address; workers spill meanwhile.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import struct
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

import uvicorn.logging
import uvloop

from ..transport.sessions import Upstreams
from ..gctune import tune_for_serving
from ..settings import Settings
from ..store import open_store
from .otel import SpanExporter
from .record import records_from_wire
from .writer import LogWriter

log = logging.getLogger("modelport.logs")

SHIP_RECORDS = b"R"
SEND_METRICS = b"M"
# A worker's graceful shutdown (30 s) plus its wait for the last acknowledgements (logs/shipper.py):
# connections still open after that belong to workers that are not stopping.
READ_TO_EOF_SECONDS = 45.0
PARENT_CHECK_SECONDS = 1.0
# Requests first: while the writer keeps up, it enriches and inserts at the lowest CPU priority, so when
# CPUs are short the kernel runs the workers (measured at c=1: the gateway's p99 2.5-3.2 ms -> 2.0 ms; at
# c=32 throughput unchanged or higher). Once it falls behind it catches up at normal priority (writer.py,
# CATCH_UP_RECORDS). The event loop, which reads the workers' frames, always runs at normal priority, so
# a backlog shows in the writer's queue rather than hiding in socket buffers.
BACKGROUND_NICENESS = 19
PROCESS_NAME = b"modelport-log"  # shown by ps/top (and found by the tests) as the process's name
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_PEER_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def run_log_service(settings: Settings, ready: Connection, parent_pid: int) -> None:
    """The process's entry point (a multiprocessing spawn target)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    libc.prctl(_PR_SET_NAME, PROCESS_NAME)
    # Ctrl-C reaches the whole process group; this process waits for the supervisor's SIGTERM, which
    # comes once the workers have shipped their last records.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _log_like_the_workers(settings.log_level)
    try:
        service = LogService(settings)
        tune_for_serving()
        uvloop.run(service.run(ready, parent_pid))
    except Exception as exc:  # tell the supervisor why, instead of a bare exit code
        log.exception("log service failed")
        if not ready.closed:
            ready.send(f"{type(exc).__name__}: {exc}")
        raise SystemExit(1) from None


def _log_like_the_workers(level: str) -> None:
    handler = logging.StreamHandler()  # stderr, where uvicorn writes the workers' logs
    handler.setFormatter(uvicorn.logging.DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


class _RecordStream:
    """One worker's ``R`` connection: ``marks`` holds, per frame not yet acknowledged, the writer's
    ``queued_total`` once the frame was queued; the frame is safe when ``settled_total`` reaches it."""

    __slots__ = ("writer", "marks")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.marks: deque[int] = deque()


class LogService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = asyncio.Event()
        self._connections: set[asyncio.Task[Any]] = set()
        self._streams: set[_RecordStream] = set()
        self._store = open_store(settings)
        self._upstreams = Upstreams(settings)  # autopoll and deployment-hardware lookups
        self._writer = LogWriter(settings, self._store, self._upstreams, background_niceness=BACKGROUND_NICENESS)
        self._writer.on_settled = self._acknowledge
        # Traces leave from here, fed by the writer as it enriches each record (logs/otel.py).
        self._spans = SpanExporter.feeding_on(self._writer, self._upstreams)

    async def run(self, ready: Connection, parent_pid: int) -> None:
        if os.getppid() != parent_pid:
            return  # the supervisor died before PR_SET_PDEATHSIG was in place
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._stop.set)
        await self._upstreams.start()
        if self._spans is not None:
            await self._spans.start()
        await self._writer.start()
        server = await asyncio.start_unix_server(self._serve, path=self.settings.log_service_address)
        ready.send(None)
        ready.close()
        log.info("log service listening (pid %d)", os.getpid())
        watch = asyncio.create_task(self._watch_parent(parent_pid))
        await self._stop.wait()
        watch.cancel()
        server.close()
        await self._read_to_eof()
        await self._writer.stop()
        if self._spans is not None:
            await self._spans.stop()  # after the writer: its last records' spans go too
        await self._upstreams.close()
        self._store.close()

    async def _read_to_eof(self) -> None:
        """Let the workers finish shipping (they close their connections when they exit)."""
        if self._connections:
            await asyncio.wait(self._connections, timeout=READ_TO_EOF_SECONDS)
        for connection in list(self._connections):
            connection.cancel()

    async def _watch_parent(self, parent_pid: int) -> None:
        while os.getppid() == parent_pid:
            await asyncio.sleep(PARENT_CHECK_SECONDS)
        self._stop.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if not _same_user(writer):
                log.warning("log service: refused a connection from another user")
                return
            kind = await reader.readexactly(1)
            if kind == SHIP_RECORDS:
                await self._receive(reader, writer)
            elif kind == SEND_METRICS:
                writer.write(self._writer.metrics.render().encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the peer went away mid-frame; a worker spills what was not acknowledged
        except Exception:
            log.exception("log service: dropped a connection")
        finally:
            self._connections.discard(task)
            writer.close()

    async def _receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = _RecordStream(writer)
        self._streams.add(stream)
        submit = self._writer.submit
        try:
            while True:
                header = await reader.read(4)
                if not header:
                    return  # EOF between frames: the worker is done
                if len(header) < 4:
                    header += await reader.readexactly(4 - len(header))
                payload = await reader.readexactly(int.from_bytes(header, "big"))
                for record in records_from_wire(payload):
                    submit(record)
                stream.marks.append(self._writer.queued_total)
                self._acknowledge()  # a frame that overflowed into the spill file is safe already
        finally:
            self._streams.discard(stream)

    def _acknowledge(self) -> None:
        settled = self._writer.settled_total
        for stream in self._streams:
            marks, count = stream.marks, 0
            while marks and marks[0] <= settled:
                marks.popleft()
                count += 1
            if count and not stream.writer.is_closing():
                stream.writer.write(count.to_bytes(4, "big"))


def _same_user(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    _, uid, _ = _PEER_CREDENTIALS.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEER_CREDENTIALS.size))
    return uid == os.getuid()
