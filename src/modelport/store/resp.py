"""A lean link to Redis for the counters' scripts: one pinned asyncio connection per process for the
request path, with the commands of concurrent requests pipelined on it (written together once per turn
of the event loop, replies matched in order), and one blocking socket for the log service's thread.

Through redis-py's asyncio client one EVALSHA cost ~150 µs of CPU here (connection pool, retry wrapper,
command packing, its pure-Python reply parser), more than all the rest of a limited request's admission;
this speaks the little of RESP2 that scripts need, at ~30 µs. redis-py stays for everything else (the
cache, usage reads, health pings) and for ``rediss://`` URLs (TLS).

Failures raise what ``RedisLink`` already classifies: ``OSError`` (refused, lost), ``TimeoutError`` (no
answer in time) or ``ReplyError`` (Redis answered an error). A connection that was lost is replaced by
the next call; one that took a command and then answered nothing at all for a whole timeout (a stalled
or vanished server) is dropped, failing what it still carries as timed out, so the next call dials again
instead of queueing behind it. A command whose connection closed under it is sent once more on a new
one (as redis-py retries once on a lost connection: after a restart each old connection fails once).
A call that merely answered late (a busy server still answering others) leaves the connection alone:
the order of replies is kept, the late one is ignored when it comes.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
from collections import deque
from typing import Any, NamedTuple, Sequence
from urllib.parse import unquote, urlsplit

Arg = bytes | str | int | float


class ReplyError(Exception):
    """Redis answered an error (``NOSCRIPT`` is handled by ``Script``)."""


class ConnectionLost(ConnectionError):
    """The connection closed under a command: it may not have reached Redis (retried once, as redis-py does)."""


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


def encode(args: Sequence[Arg]) -> bytes:
    """A command as a RESP array of bulk strings (numbers as redis-py writes them)."""
    out = bytearray(b"*%d\r\n" % len(args))
    for arg in args:
        kind = arg.__class__
        data = arg if kind is bytes else b"%d" % arg if kind is int else _other(arg)  # type: ignore[operator]
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return bytes(out)


def _other(arg: Arg) -> bytes:
    if isinstance(arg, (bytes, bytearray)):
        return bytes(arg)
    if isinstance(arg, int):  # bool, or an int subclass
        return b"%d" % arg
    return arg.encode() if isinstance(arg, str) else repr(arg).encode()


def parse(buffer: bytes, at: int) -> tuple[Any, int]:
    """One reply from ``buffer[at:]`` and where the next begins; raises ``_Incomplete`` if it is cut off.
    An error reply is returned as a ``ReplyError`` (raised by whoever waits for it)."""
    end = buffer.find(b"\r\n", at)
    if end < 0:
        raise _Incomplete
    kind, line, at = buffer[at], buffer[at + 1 : end], end + 2
    if kind == 58:  # ':' integer
        return int(line), at
    if kind == 36:  # '$' bulk string
        size = int(line)
        if size < 0:
            return None, at
        if len(buffer) < at + size + 2:
            raise _Incomplete
        return buffer[at : at + size], at + size + 2
    if kind == 42:  # '*' array
        size = int(line)
        if size < 0:
            return None, at
        items = []
        for _ in range(size):
            item, at = parse(buffer, at)
            items.append(item)
        return items, at
    if kind == 43:  # '+' simple string
        return line, at
    if kind == 45:  # '-' error
        return ReplyError(line.decode("utf-8", "replace")), at
    raise ValueError(f"unexpected Redis reply type {chr(kind)!r}")


class _Pipe(asyncio.Protocol):
    """One connection: commands written in order, each reply handed to the oldest waiting future. The
    commands of one turn of the event loop go out in one write (one syscall for all of them)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.outgoing: list[bytes] = []
        self.buffer = b""
        self.replies = 0  # how many replies have arrived: a timed-out call checks whether any did since
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, args: Sequence[Arg]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append(future)
        if not self.outgoing:
            loop.call_soon(self.flush)
        self.outgoing.append(encode(args))
        return future

    def flush(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if not self.lost and self.transport is not None:
            self.transport.write(b"".join(outgoing))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        at = 0
        try:
            while at < len(buffer):
                reply, at = parse(buffer, at)
                self.replies += 1
                future = self.waiting.popleft()
                if not future.done():  # else it timed out, or its caller went away
                    if isinstance(reply, ReplyError):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        except _Incomplete:
            pass
        except (ValueError, IndexError) as exc:  # a reply nobody asked for, or one we cannot read
            self.drop(ConnectionError(f"unreadable answer from Redis ({exc})"))
            return
        self.buffer = buffer[at:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail_all(ConnectionLost(f"connection to Redis lost ({exc})" if exc else "Redis closed the connection"))

    def fail_all(self, exc: Exception) -> None:
        self.lost = True
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)

    def drop(self, exc: Exception) -> None:
        self.fail_all(exc)
        if self.transport is not None:
            self.transport.abort()


def _expire(future: asyncio.Future[Any], pipe: _Pipe, replies_before: int) -> None:
    if future.done():
        return
    if pipe.replies == replies_before:  # nothing at all came back since it was sent: the link is stalled
        pipe.drop(TimeoutError("no answer from Redis"))
    else:
        future.set_exception(TimeoutError("no answer from Redis"))


class Address(NamedTuple):
    host: str
    port: int
    path: str | None  # a unix socket
    db: int
    username: str | None
    password: str | None

    @classmethod
    def of(cls, url: str) -> Address | None:
        """For ``redis://`` and ``unix://`` URLs; None for others (``rediss://``: redis-py handles TLS)."""
        parts = urlsplit(url)
        query = dict(item.split("=", 1) for item in parts.query.split("&") if "=" in item)
        password = unquote(parts.password) if parts.password else query.get("password")
        username = unquote(parts.username) if parts.username else None
        if parts.scheme == "redis":
            db = query.get("db") or parts.path.lstrip("/") or "0"
            return cls(parts.hostname or "localhost", parts.port or 6379, None, int(db), username, password)
        if parts.scheme == "unix":
            return cls("", 0, parts.path, int(query.get("db", "0")), username, password)
        return None

    def setup(self) -> list[list[Arg]]:
        """The commands a new connection sends first."""
        commands: list[list[Arg]] = []
        if self.password:
            commands.append([b"AUTH", *([self.username] if self.username else []), self.password])
        if self.db:
            commands.append([b"SELECT", self.db])
        return commands


class PinnedConnection:
    def __init__(self, address: Address, timeout: float) -> None:
        self._address = address
        self.timeout = timeout
        self._pipe: _Pipe | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Task[_Pipe] | None = None

    @classmethod
    def for_url(cls, url: str, timeout: float) -> PinnedConnection | None:
        address = Address.of(url)
        return cls(address, timeout) if address is not None else None

    async def execute(self, *args: Arg) -> Any:
        """Run one command. A connection found closed under it (Redis restarted since its last use) is
        replaced and the command sent once more; a timeout is never retried (it would double the wait)."""
        try:
            return await self._execute(args)
        except ConnectionLost:
            return await self._execute(args)

    async def _execute(self, args: Sequence[Arg]) -> Any:
        pipe = await self._ready()
        loop = self._loop
        future = pipe.send(args)
        timer = loop.call_later(self.timeout, _expire, future, pipe, pipe.replies)  # type: ignore[union-attr]
        try:
            return await future
        finally:
            timer.cancel()

    async def _ready(self) -> _Pipe:
        pipe, loop = self._pipe, asyncio.get_running_loop()
        if pipe is not None and not pipe.lost and self._loop is loop:
            return pipe
        connecting = self._connecting
        if connecting is None or connecting.get_loop() is not loop:
            connecting = self._connecting = loop.create_task(self._connect(loop))
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Pipe:
        address = self._address
        async with asyncio.timeout(self.timeout):
            if address.path:
                _, pipe = await loop.create_unix_connection(_Pipe, address.path)
            else:
                _, pipe = await loop.create_connection(_Pipe, address.host, address.port)  # asyncio sets TCP_NODELAY
            try:
                for command in address.setup():
                    await pipe.send(command)
            except BaseException:
                pipe.drop(ConnectionError("Redis refused the connection's setup"))
                raise
        self._pipe, self._loop = pipe, loop
        return pipe

    def close(self) -> None:
        """Close the connection when called on its own loop (else it goes with the process)."""
        try:
            here = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            here = False
        if here and self._pipe is not None and self._pipe.transport is not None:
            self._pipe.transport.close()
        self._pipe = None


class Script:
    """A Lua script run by EVALSHA on the pinned connection; sent whole (EVAL, which also caches it in
    Redis) the first time Redis does not know it: first use, or after a restart or ``SCRIPT FLUSH``."""

    def __init__(self, connection: PinnedConnection, body: str) -> None:
        self._connection = connection
        self._body = body.encode()
        self._sha = hashlib.sha1(self._body).hexdigest().encode()

    async def __call__(self, keys: Sequence[bytes], args: Sequence[Arg]) -> Any:
        try:
            return await self._connection.execute(b"EVALSHA", self._sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self._connection.execute(b"EVAL", self._body, len(keys), *keys, *args)


class BlockingConnection:
    """The same for a thread (the log service's settlements): one socket, one command at a time."""

    def __init__(self, address: Address, timeout: float) -> None:
        self._address = address
        self.timeout = timeout
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_url(cls, url: str, timeout: float) -> BlockingConnection | None:
        address = Address.of(url)
        return cls(address, timeout) if address is not None else None

    def execute(self, *args: Arg) -> Any:
        with self._lock:
            try:
                return self._execute(args)
            except ConnectionLost:  # closed since its last use (a restart): once more, on a new connection
                return self._execute(args)

    def _execute(self, args: Sequence[Arg]) -> Any:
        sock = self._socket or self._connect()
        try:
            reply = self._exchange(sock, args)
        except BaseException:
            self.close()  # a timeout leaves a reply in flight: this connection is out of step
            raise
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def _exchange(self, sock: socket.socket, args: Sequence[Arg]) -> Any:
        try:
            sock.sendall(encode(args))
            buffer = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionLost("Redis closed the connection")
                buffer += chunk
                try:
                    return parse(buffer, 0)[0]
                except _Incomplete:
                    continue
        except socket.timeout:
            raise TimeoutError("no answer from Redis") from None
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ConnectionLost(f"connection to Redis lost ({exc})") from None

    def _connect(self) -> socket.socket:
        address = self._address
        if address.path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(address.path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((address.host, address.port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for command in address.setup():
                reply = self._exchange(sock, command)
                if isinstance(reply, ReplyError):
                    raise reply
        except BaseException:
            sock.close()
            raise
        self._socket = sock
        return sock

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class BlockingScript:
    """``Script`` on a ``BlockingConnection``."""

    def __init__(self, connection: BlockingConnection, body: str) -> None:
        self._connection = connection
        self._body = body.encode()
        self._sha = hashlib.sha1(self._body).hexdigest().encode()

    def __call__(self, keys: Sequence[bytes], args: Sequence[Arg]) -> Any:
        try:
            return self._connection.execute(b"EVALSHA", self._sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return self._connection.execute(b"EVAL", self._body, len(keys), *keys, *args)
