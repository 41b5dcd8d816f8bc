"""Run ``modelport serve`` as a real process on a free loopback port, the way a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ADMIN_KEY = "mp-test-admin-key-0123456789abcdefghijklmnop"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_line_then_hang_up(command: list[str], env: dict[str, str]) -> tuple[str, int, str]:
    """Run a command whose standard output is a real pipe, read one line and close it, as ``| head -1`` does.

    Returns (that line, exit code, standard error). The command must print more than a pipe holds (64 KiB),
    so that it is still writing when the reader goes away.
    """
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read()
    return first.decode(), proc.wait(timeout=60), stderr.decode()


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, settings: dict[str, Any], providers: list[dict[str, Any]]) -> Path:
    lines = [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    for provider in providers:
        lines.append("\n[[providers]]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in provider.items())
    path.write_text("\n".join(lines) + "\n")
    return path


class GatewayProcess:
    """A gateway subprocess. ``url`` is its origin; ``v1`` its API root."""

    def __init__(self, data_dir: Path, *, providers: list[dict[str, Any]] | None = None,
                 settings: dict[str, Any] | None = None, env: dict[str, str] | None = None, workers: int = 1,
                 log_level: str = "warning") -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.workers = workers
        self.log_level = log_level
        self.admin_key = ADMIN_KEY
        # The suite's fakes listen on loopback; the operator (this harness) trusts it for stored providers, as
        # a deployment would trust its own upstreams. A test of the SSRF rules passes trusted_hosts itself.
        settings = {"trusted_hosts": ["127.0.0.1"], **(settings or {})}
        self.config = write_config(data_dir.parent / f"{data_dir.name}.toml", settings, providers or [])
        self.env = {**os.environ, "MODELPORT_ADMIN_KEY": ADMIN_KEY, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def start(self, timeout: float = 20) -> "GatewayProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "modelport", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
                   "--config", str(self.config), "--workers", str(self.workers), "--log-level", self.log_level]
        self._log = open(self.log_path, "ab")
        # A session of its own, so SIGKILL can take every process of the gateway at once, as a crash does.
        self.process = subprocess.Popen(command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gateway did not become ready:\n{self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.process.pid, sig)  # the log service and workers too: nothing left to drain
            else:
                self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        self.process = None
        return code

    def log_service_pid(self) -> int | None:
        """The pid of the gateway's log service process (named ``modelport-log``), if one is running."""
        assert self.process is not None
        for status in Path("/proc").glob("[0-9]*/stat"):
            try:
                pid, rest = status.read_text().split(" (", 1)
            except OSError:
                continue  # it exited while we looked
            name, fields = rest.rsplit(") ", 1)
            if name == "modelport-log" and int(fields.split()[1]) == self.process.pid:
                return int(pid)
        return None

    def worker_memory_kb(self, kind: str = "VmRSS") -> int:
        """A /proc memory figure (kB) of the gateway's one worker (``VmRSS`` now, ``VmHWM`` its peak). With
        one worker, the ``modelport serve`` process serves requests itself."""
        assert self.process is not None and self.workers == 1
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(kind + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {kind} in /proc/{self.process.pid}/status")

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def headers(self, **extra: str) -> dict[str, str]:
        return {"x-portkey-api-key": self.admin_key, **extra}

    def __enter__(self) -> "GatewayProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
