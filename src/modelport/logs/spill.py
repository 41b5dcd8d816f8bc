"""The spill file: an append-only JSON-lines file of log records the store could not take in time.

A process appends to ``<data_dir>/spill/<pid>.jsonl`` and holds an exclusive ``flock`` on
``<pid>.lock`` while it owns the file: the log service when the store is locked or slow, a worker
while the log service is unreachable (it closes its file, freeing the lock, once it reconnects). A file
whose lock can be taken belongs to no one (a crash, SIGKILL, a worker that let go), so the log writer
claims it and replays it; a reused pid cannot fool the lock. Replay is idempotent (the writer skips
log ids already stored), so a crash between the store's commit and the file's removal costs nothing.
"""

from __future__ import annotations

import base64
import fcntl
import itertools
import os
import threading
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import IO, Any

import orjson

from ..log_record import Attempt, LogRecord
from .record import degraded, header_dict
from .redaction import redact_headers

_RECORD_FIELDS = tuple(f.name for f in fields(LogRecord))
_BYTES_FIELDS = ("request_body", "response_body")


def record_to_line(record: LogRecord) -> bytes:
    try:
        return _line(record)
    except (TypeError, ValueError) as exc:  # orjson: nested too deep, or a value it cannot encode
        return _line(degraded(record, f"the record could not be encoded ({exc})"))


def _line(record: LogRecord) -> bytes:
    data: dict[str, Any] = {name: getattr(record, name) for name in _RECORD_FIELDS}
    data["attempts"] = [{f.name: getattr(a, f.name) for f in fields(Attempt)} for a in record.attempts]
    # Credentials never reach the disk: the spill file is redacted as the log store's rows are.
    data["request_headers"] = redact_headers(header_dict(record.request_headers))
    data["response_headers"] = redact_headers(header_dict(record.response_headers))
    for name in _BYTES_FIELDS:
        value = data[name]
        data[name] = base64.b64encode(value).decode() if value is not None else None
    # NON_STR_KEYS: header dicts from aiohttp have case-insensitive str-subclass keys.
    return orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n"


def record_from_line(line: bytes) -> LogRecord:
    data = orjson.loads(line)
    data = {name: value for name, value in data.items() if name in _RECORD_FIELDS}
    for name in _BYTES_FIELDS:
        if data.get(name) is not None:
            data[name] = base64.b64decode(data[name])
    data["attempts"] = [Attempt(**attempt) for attempt in data.get("attempts") or ()]
    return LogRecord(**data)


class SpillFile:
    """This process's spill file. ``append`` may be called from the event loop (queue overflow) and
    from the writer thread (a failed batch). ``backlog`` lists files waiting to be replayed: this
    process's taken lines and the files it adopted from dead processes."""

    def __init__(self, directory: Path, pid: int | None = None) -> None:
        self.directory = Path(directory)
        self.pid = os.getpid() if pid is None else pid
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.directory / f"{self.pid}.jsonl"
        self._lock = threading.Lock()
        self._handle: IO[bytes] | None = None
        self._owner_lock = _hold_lock(self.directory / f"{self.pid}.lock")
        self._names = itertools.count()
        self.backlog: list[Path] = []
        self.pending = self.path.exists()  # left by a dead predecessor with this pid

    def append(self, lines: list[bytes], durable: bool = True) -> None:
        """Append lines; ``durable`` fsyncs (per batch), so a crash right after loses nothing."""
        with self._lock:
            if self._handle is None:
                # 0600: spilled records carry request bodies.
                self._handle = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
            self._handle.writelines(lines)
            self._handle.flush()
            self.pending = True
            if durable:
                os.fsync(self._handle.fileno())

    def take(self) -> None:
        """Move the pending lines to the backlog; later appends go to a fresh file."""
        with self._lock:
            if not self.pending:
                return
            self._close_handle()
            if self.path.exists():
                self.backlog.append(self._rename(self.path))
            self.pending = False

    def adopt_orphans(self) -> None:
        """Claim the spill files of processes that are gone (their lock is free) into the backlog."""
        for lock_path in sorted(self.directory.glob("*.lock")):
            owner = lock_path.name.split(".", 1)[0]
            if owner == str(self.pid):
                continue
            claimed = _try_lock(lock_path)
            if claimed is None:
                continue  # its owner is alive
            try:
                for path in sorted(self.directory.glob(f"{owner}.*jsonl")):
                    self.backlog.append(self._rename(path))
                lock_path.unlink(missing_ok=True)
            finally:
                os.close(claimed)
        # Files first, then owners: a file named for a live process exists only after its lock does.
        files = sorted(self.directory.glob("*.jsonl"))
        owners = {p.name.split(".", 1)[0] for p in self.directory.glob("*.lock")}
        for path in files:
            owner = path.name.split(".", 1)[0]
            if owner not in owners or (owner == str(self.pid) and path != self.path and path not in self.backlog):
                try:
                    self.backlog.append(self._rename(path))  # a lost lock, or this pid's dead predecessor
                except FileNotFoundError:
                    pass  # another starting worker claimed it first

    def done(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.backlog.remove(path)

    def _rename(self, path: Path) -> Path:
        target = self.directory / f"{self.pid}.{next(self._names)}.{os.urandom(4).hex()}.replay.jsonl"
        os.replace(path, target)
        return target

    def _close_handle(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None

    def close(self) -> None:
        with self._lock:
            self._close_handle()
        if not self.pending and not self.backlog:
            self.path.unlink(missing_ok=True)
            (self.directory / f"{self.pid}.lock").unlink(missing_ok=True)
        os.close(self._owner_lock)


def read_lines(path: Path, batch: int) -> Iterator[list[LogRecord]]:
    """Records of a spill file in batches; a torn last line (crash mid-write) is skipped."""
    chunk: list[LogRecord] = []
    with open(path, "rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break
            try:
                chunk.append(record_from_line(line))
            except (ValueError, TypeError):
                continue  # unreadable line: keep going, the rest is still good
            if len(chunk) >= batch:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _hold_lock(path: Path) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # An adopter unlinks a lock file it claimed while holding it: a lock taken on that old inode
        # guards nothing, and adopt_orphans would take this process's new file for an orphan.
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
