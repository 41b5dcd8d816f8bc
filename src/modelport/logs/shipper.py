"""A worker's ``Recorder`` under ``modelport serve``: hand each record to the log service, cheaply.

    submit(record) ─▶ pending list ─(64 records or 5 ms)─▶ marshal ─▶ Unix socket ─▶ log service
                                          │ not connected, or the service is behind
                                          ▼
                               spill/<pid>.jsonl ─(released on reconnect)─▶ adopted by the service

``submit`` is an append (and, for the first record of a batch, one ``call_later``); a batch costs one
marshal (~1.2 µs a record) and one non-blocking write, so the worker's event loop keeps the GIL. A batch
stays in memory until the service acknowledges it (logs/service.py has the protocol); if the
connection drops first, it goes to this worker's spill file, like every batch while the service is
unreachable or more than ``HIGH_WATER_BYTES`` behind. Nothing is dropped and nothing blocks.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque

from ..settings import Settings
from ..log_record import LogRecord
from .record import records_from_wire, records_to_wire
from .service import SEND_METRICS, SHIP_RECORDS
from .spill import SpillFile, record_to_line

log = logging.getLogger("modelport.logs")

# Small, frequent frames: encoding a frame, and freeing its records, holds the event loop; at 256
# records or 20 ms that was 0.4-1.5 ms, which requests in flight waited out (p99 3 ms at c=1).
BATCH_SIZE = 64
FLUSH_SECONDS = 0.005
# Unsent bytes in the socket's buffer (the service is not reading) or unacknowledged bytes (it reads
# but cannot keep up) above which batches go to the spill file rather than pile up in memory. 16 MB is
# about a second of one worker's records with bodies; at 64 MB a worker behind a starved log service
# grew to 124 MB.
HIGH_WATER_BYTES = 8 * 1024 * 1024
UNACKNOWLEDGED_LIMIT_BYTES = 16 * 1024 * 1024
RECONNECT_FIRST_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 1.0
SPILL_RETRY_SECONDS = 1.0
STOP_WAIT_SECONDS = 10.0
METRICS_TIMEOUT_SECONDS = 5.0


class LogShipper:
    def __init__(self, settings: Settings) -> None:
        self._address = settings.log_service_address
        self._spill_directory = settings.data_dir / "spill"
        self._pending: list[LogRecord] = []
        self._timer: asyncio.TimerHandle | None = None
        self._link: _Link | None = None
        self._unacknowledged: deque[bytes] = deque()  # frames, until the service has them safe
        self._unacknowledged_bytes = 0
        self._all_acknowledged = asyncio.Event()
        self._all_acknowledged.set()
        self._spill: SpillFile | None = None
        self._connector: asyncio.Task[None] | None = None

    # -- the request path -------------------------------------------------------------------------
    def submit(self, record: LogRecord) -> None:
        pending = self._pending
        pending.append(record)
        if len(pending) >= BATCH_SIZE:
            self._flush()
        elif len(pending) == 1:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            self._ship(batch)

    def _ship(self, batch: list[LogRecord]) -> None:
        link = self._link
        if link is None or link.backed_up() or self._unacknowledged_bytes > UNACKNOWLEDGED_LIMIT_BYTES:
            self._spill_batch(batch)
            return
        try:
            payload = records_to_wire(batch)
        except Exception:  # a value marshal cannot encode: the spill file's JSON takes anything
            log.exception("could not encode %d log records; spilling them", len(batch))
            self._spill_batch(batch)
            return
        link.send(payload)
        # Kept encoded, not as records: an acknowledgement then frees one bytes object, not a batch of
        # records with all their parts (1.3 ms for 500, measured, on the event loop).
        self._unacknowledged.append(payload)
        self._unacknowledged_bytes += len(payload)
        self._all_acknowledged.clear()

    def _spill_batch(self, batch: list[LogRecord]) -> None:
        try:
            if self._spill is None:
                self._spill = SpillFile(self._spill_directory)
                log.warning("log service unreachable or behind: spilling log records to %s", self._spill.path)
            # Not fsynced: the page cache outlives this process, and the event loop must not wait on a disk.
            self._spill.append([record_to_line(record) for record in batch], durable=False)
        except Exception:  # never raise into the request path; keep them and try again shortly
            log.exception("could not spill %d log records; keeping them in memory", len(batch))
            self._pending[:0] = batch
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(SPILL_RETRY_SECONDS, self._flush)

    # -- the link to the log service --------------------------------------------------------------
    def _acknowledged(self, frames: int) -> None:
        for _ in range(frames):
            self._unacknowledged_bytes -= len(self._unacknowledged.popleft())
        if not self._unacknowledged:
            self._all_acknowledged.set()
            self._release_spill()  # the service has caught up: let it take what spilled meanwhile

    def _disconnected(self) -> None:
        self._link = None
        lost = [record for payload in self._unacknowledged for record in records_from_wire(payload)]
        self._unacknowledged.clear()
        self._unacknowledged_bytes = 0
        self._all_acknowledged.set()
        if lost:
            self._spill_batch(lost)

    async def _stay_connected(self) -> None:
        delay, unreachable = RECONNECT_FIRST_SECONDS, False
        while True:
            try:
                link = await self._open_link()
            except OSError as exc:
                if not unreachable:
                    log.warning("log service unreachable (%s); spilling log records until it is back", exc)
                unreachable = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                continue
            if unreachable:
                log.warning("log service reachable again")
            delay, unreachable = RECONNECT_FIRST_SECONDS, False
            self._link = link
            self._release_spill()
            await link.closed.wait()

    async def _open_link(self) -> _Link:
        sock = await self._connect(SHIP_RECORDS)
        try:
            _, link = await asyncio.get_running_loop().create_unix_connection(lambda: _Link(self), sock=sock)
        except BaseException:
            sock.close()
            raise
        return link

    async def _connect(self, kind: bytes) -> socket.socket:
        # A connected socket rather than create_unix_connection(path=...): uvloop 0.23 refuses abstract
        # addresses there (EINVAL), while its sock_connect takes them.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, self._address)
            sock.send(kind)
        except BaseException:  # refused, or cancelled by stop()
            sock.close()
            raise
        return sock

    def _release_spill(self) -> None:
        """Close this worker's spill file, freeing its lock, so the log service adopts and replays it."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        self._connector = asyncio.create_task(self._stay_connected(), name="modelport-log-shipper")

    async def stop(self) -> None:
        """Ship what is pending, wait (bounded) until the service has it all, then let go."""
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
        self._flush()
        link = self._link
        if link is not None:
            try:
                await asyncio.wait_for(self._all_acknowledged.wait(), STOP_WAIT_SECONDS)
            except TimeoutError:
                log.warning("log service did not acknowledge %d bytes of log records in time; spilling them",
                            self._unacknowledged_bytes)
            link.close()
            await link.closed.wait()  # connection_lost spills whatever is still unacknowledged
        self._release_spill()

    async def render_metrics(self) -> str:
        """The log service's Prometheus text; raises OSError or TimeoutError if it cannot be reached."""
        async with asyncio.timeout(METRICS_TIMEOUT_SECONDS):
            reader, writer = await asyncio.open_unix_connection(sock=await self._connect(SEND_METRICS))
            try:
                text = await reader.read()
            finally:
                writer.close()
        if not text:
            raise ConnectionError("the log service closed the connection without an answer")
        return text.decode()


class _Link(asyncio.Protocol):
    """The ``R`` connection: writes frames, reads acknowledgements."""

    def __init__(self, shipper: LogShipper) -> None:
        self._shipper = shipper
        self._transport: asyncio.Transport | None = None
        self._received = bytearray()
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        received = self._received
        received += data
        whole = len(received) - len(received) % 4
        frames = sum(int.from_bytes(received[i:i + 4], "big") for i in range(0, whole, 4))
        del received[:whole]
        self._shipper._acknowledged(frames)

    def connection_lost(self, exc: Exception | None) -> None:
        self._shipper._disconnected()
        self.closed.set()

    def send(self, payload: bytes) -> None:
        assert self._transport is not None
        self._transport.writelines((len(payload).to_bytes(4, "big"), payload))

    def backed_up(self) -> bool:
        transport = self._transport
        return transport is None or transport.is_closing() or transport.get_write_buffer_size() > HIGH_WATER_BYTES

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
