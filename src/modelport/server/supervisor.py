"""Run the gateway: the log service process, then one worker (in this process) or N worker processes
each with its own SO_REUSEPORT socket, all bound here in the parent first (``listen``).

A shared listening socket let one worker take every connection in 2 of 9 benchmark runs
(docs/architecture.md); with SO_REUSEPORT the kernel spreads connections over the workers' sockets by hash.
The log service (logs/service.py) starts first and stops last, and is restarted if it dies.
SIGTERM/SIGINT: every worker stops accepting, finishes in-flight requests, ships its last log records,
then exits; then the log service is told to stop, and drains everything into the store.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import signal
import errno
import socket
import sys
import threading
from multiprocessing.connection import wait
from typing import Any

import uvicorn

from ..logs.service import READ_TO_EOF_SECONDS, run_log_service
from ..settings import Settings, SettingsError
from ..gctune import tune_for_serving

GRACEFUL_SHUTDOWN_SECONDS = 30
LOG_SERVICE_READY_SECONDS = 30.0
LOG_SERVICE_RESTART_FIRST_SECONDS = 0.2
LOG_SERVICE_RESTART_MAX_SECONDS = 10.0


LISTEN_BACKLOG = 2048


class PortUnavailable(SettingsError):
    """The configured host and port cannot be listened on; the message says why, in one line."""


def listen(settings: Settings) -> list[socket.socket]:
    """One listening socket per worker, bound in the parent before anything else starts, so that a port
    in use is refused before a banner or an admin key is printed.

    The first socket is bound *without* SO_REUSEPORT, so that bind fails when anything at all listens on
    the port, another ModelPort included: Linux lets every socket of the same user that sets SO_REUSEPORT
    join a port whose sockets all set it, and a second gateway's workers would answer part of the first's
    traffic with their own keys. Only once it holds the port does it set SO_REUSEPORT (before listen(),
    which forms the group) for this gateway's other sockets to join. A gateway started later fails that
    same first bind."""
    host, port = settings.host, settings.port
    first = _bound(host, port, reuse_port=False)
    sockets = [first]
    try:
        if settings.workers > 1:
            first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        first.listen(LISTEN_BACKLOG)
        for _ in range(settings.workers - 1):
            sockets.append(_bound(host, port, reuse_port=True))
            sockets[-1].listen(LISTEN_BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bound(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait for TIME_WAIT
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailable(f"cannot listen on {host}:{port}: the address is already in use (by another "
                                  "ModelPort or another server); stop it or choose another --port") from None
        raise PortUnavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    from .app import ModelPortApp
    from .protocol import bounded_protocol

    return uvicorn.Config(
        ModelPortApp(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=bounded_protocol(settings),
        lifespan="on",
        log_level=settings.log_level,
        access_log=False,  # every request is in ModelPort's own log store; a second log per request costs CPU
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_keep_alive=30,
    )


def run_worker(settings: Settings, sock: socket.socket, server: uvicorn.Server | None = None) -> None:
    server = server or worker_server(settings)
    tune_for_serving()
    # uvicorn re-raises the signal it caught once shutdown is complete; with these handlers in place the
    # re-raise is a no-op, so a finished graceful shutdown exits 0 instead of dying "by SIGTERM".
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    server.run(sockets=[sock])


def worker_server(settings: Settings) -> uvicorn.Server:
    return uvicorn.Server(uvicorn_config(settings))  # imports and builds the app (it connects on startup)


def _worker_main(settings: Settings, sock: socket.socket) -> None:
    try:
        run_worker(settings, sock)
    except KeyboardInterrupt:
        pass


class LogServiceError(RuntimeError):
    """The log service could not be started; the message says why."""


class LogServiceProcess:
    """The log service child: started (and waited for) before the workers, restarted if it crashes,
    stopped after they have exited. ``settings`` carries its address for the workers."""

    def __init__(self, settings: Settings, context: Any) -> None:
        address = f"\0modelport-log-{os.getpid()}-{secrets.token_hex(4)}"
        self.settings = settings.with_changes(log_service_address=address)
        self._context = context
        self._process: Any = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a restart and stop() never overlap
        self._watcher = threading.Thread(target=self._watch, name="modelport-log-service-watcher", daemon=True)

    def launch(self) -> None:
        """Start the service without waiting for it: it imports and opens the store (~1 s) while the
        caller prepares its worker. ``wait_ready`` then waits for it to listen."""
        self._launched = self._launch()

    def abandon(self) -> None:
        """Kill a service launched but not waited for (the worker could not be built)."""
        process, receiver = self._launched
        receiver.close()
        process.kill()
        process.join()

    def wait_ready(self) -> None:
        self._process = self._await_ready(*self._launched)
        self._watcher.start()

    def stop(self) -> int:
        """SIGTERM the service and wait for it to drain; its exit code."""
        self._stopping.set()
        with self._lock:
            process = self._process
            process.terminate()
            process.join(READ_TO_EOF_SECONDS + GRACEFUL_SHUTDOWN_SECONDS)
            if process.exitcode is None:
                print("modelport: the log service did not stop in time; killing it", file=sys.stderr)
                process.kill()
                process.join()
        self._watcher.join()
        return process.exitcode

    def _spawn(self) -> Any:
        return self._await_ready(*self._launch())

    def _launch(self) -> tuple[Any, Any]:
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(target=run_log_service, args=(self.settings, sender, os.getpid()),
                                        name="modelport-log-service")
        process.start()
        sender.close()
        return process, receiver

    def _await_ready(self, process: Any, receiver: Any) -> Any:
        with receiver:
            if not wait([receiver, process.sentinel], LOG_SERVICE_READY_SECONDS):
                process.kill()
                process.join()
                raise LogServiceError(f"the log service did not start within {LOG_SERVICE_READY_SECONDS:g} s")
            try:
                failure = receiver.recv()  # None once it listens, else why it could not start
            except EOFError:  # it died before saying anything
                process.join()
                failure = f"it exited with code {process.exitcode}"
        if failure is not None:
            process.join()
            raise LogServiceError(f"the log service could not start: {failure}")
        return process

    def _watch(self) -> None:
        # Restarts are spawned from this thread, which lives as long as the service: the service's
        # PR_SET_PDEATHSIG fires when the *thread* that started it ends, not only the process.
        while True:
            self._process.join()
            # Exit code 0: it was told to stop (a SIGTERM to the whole process group, as systemd or
            # `timeout` send, reaches it beside the workers); anything else is a crash.
            if self._stopping.is_set() or self._process.exitcode == 0:
                return
            print(f"modelport: the log service exited with code {self._process.exitcode}; restarting it", file=sys.stderr)
            self._restart()

    def _restart(self) -> None:
        delay = LOG_SERVICE_RESTART_FIRST_SECONDS
        while not self._stopping.wait(delay):
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._process = self._spawn()
                    return
                except LogServiceError as exc:
                    print(f"modelport: {exc}; trying again", file=sys.stderr)
            delay = min(delay * 2, LOG_SERVICE_RESTART_MAX_SECONDS)


def serve(settings: Settings, sockets: list[socket.socket]) -> int:
    """Run the gateway on ``sockets`` (from ``listen``) until it is told to stop; the exit code."""
    context = multiprocessing.get_context("spawn")
    log_service = LogServiceProcess(settings, context)
    log_service.launch()
    try:
        # One worker runs here: build it while the service starts (they overlap on a second core).
        server = worker_server(log_service.settings) if settings.workers == 1 else None
    except BaseException:
        log_service.abandon()
        raise
    try:
        log_service.wait_ready()
    except LogServiceError as exc:
        print(f"modelport: {exc}", file=sys.stderr)
        return 1
    try:
        code = _run_workers(log_service.settings, sockets, context, server)
    finally:
        service_code = log_service.stop()
    if service_code != 0:
        print(f"modelport: the log service exited with code {service_code}", file=sys.stderr)
    return 1 if code or service_code else 0


def _run_workers(settings: Settings, sockets: list[socket.socket], context: Any,
                 server: uvicorn.Server | None) -> int:
    if settings.workers == 1:
        run_worker(settings, sockets[0], server)
        return 0
    # Each worker gets its socket as an argument: multiprocessing passes the descriptor to the child.
    workers = [context.Process(target=_worker_main, args=(settings, sock), name=f"modelport-worker-{i}")
               for i, sock in enumerate(sockets)]
    for worker in workers:
        worker.start()
    for sock in sockets:
        sock.close()  # the workers hold them now; a worker that dies takes its socket (and its queue) along

    def forward(signum: int, _frame: Any) -> None:
        for worker in workers:
            if worker.is_alive() and worker.pid:
                try:
                    os.kill(worker.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for worker in workers:
        worker.join()
    failed = [w for w in workers if w.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        print(f"modelport: {len(failed)} worker(s) exited with an error", file=sys.stderr)
    return 1 if failed else 0
