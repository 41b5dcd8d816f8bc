"""A private PostgreSQL server for fault tests: initdb'd in a temporary directory on a free loopback port,
stopped and started by the test, so the machine's shared server is never disturbed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.harness import free_port


class PrivatePostgres:
    def __init__(self) -> None:
        # Under /tmp itself: the server runs as postgres, which cannot enter pytest's root-only directories.
        self.root = Path(tempfile.mkdtemp(prefix="modelport-pg-"))
        root = self.root
        self.port = free_port()
        self.data = root / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        as_postgres = os.geteuid() == 0  # the server refuses to run as root
        self._prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []
        root.mkdir(parents=True, exist_ok=True)
        if as_postgres:
            shutil.chown(root, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "start",
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run([*self._prefix, "pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)  # if it is still running
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, *command: str) -> None:
        subprocess.run([*self._prefix, *command], check=True, capture_output=True, timeout=60)
