"""Run the gateway: one process, or N workers each with its own SO_REUSEPORT socket.

A shared listening socket let one worker take every connection in 2 of 9 benchmark runs
(DESIGN.md); with SO_REUSEPORT the kernel spreads connections over the workers' sockets by hash.
SIGTERM/SIGINT: every worker stops accepting, finishes in-flight requests, flushes, then exits.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
from typing import Any

import uvicorn

from ..settings import Settings

GRACEFUL_SHUTDOWN_SECONDS = 30


def bind_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    from .app import ModelPortApp

    return uvicorn.Config(
        ModelPortApp(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level=settings.log_level,
        access_log=False,  # every request is in ModelPort's own log store; a second log per request costs CPU
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_keep_alive=30,
    )


def run_worker(settings: Settings) -> None:
    # The log writer's thread does CPU work; with CPython's default 5 ms switch interval a request could
    # wait that long for the GIL. 1 ms keeps the event loop's waits short for a small switching cost.
    sys.setswitchinterval(0.001)
    sock = bind_socket(settings.host, settings.port, reuse_port=settings.workers > 1)
    server = uvicorn.Server(uvicorn_config(settings))
    # uvicorn re-raises the signal it caught once shutdown is complete; with these handlers in place the
    # re-raise is a no-op, so a finished graceful shutdown exits 0 instead of dying "by SIGTERM".
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    server.run(sockets=[sock])


def _worker_main(settings: Settings) -> None:
    try:
        run_worker(settings)
    except KeyboardInterrupt:
        pass


def serve(settings: Settings) -> int:
    if settings.workers == 1:
        run_worker(settings)
        return 0
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker_main, args=(settings,), name=f"modelport-worker-{i}") for i in range(settings.workers)]
    for worker in workers:
        worker.start()

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
