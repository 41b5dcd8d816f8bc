"""Leases: which process of the whole gateway runs a background job (a provider's autopoll, named
``<provider>-autopoll``: Replicate's).

On the embedded store one node exists and its log service is the only process that asks, so the lease
is always held. On PostgreSQL every node's log service asks; a session-level advisory lock on a
connection of its own decides, so exactly one node holds it at a time, and the server drops it the
moment its holder's connection ends (a node killed, a network cut), for another node to take at its
next ``held()``. A holder whose connection broke knows at its next ``held()`` and stops the job.
"""

from __future__ import annotations

import hashlib
import re
import threading
from typing import Any, Protocol

JOB_NAME = re.compile(r"[a-z0-9][a-z0-9-]*-autopoll")  # the background jobs: one autopoll per provider with jobs
# The PostgreSQL log store's partition upkeep needs none: every writer runs it, serialised by the lock its
# batches take (store/pg_logs.py), and each step is safe to repeat.


class Lease(Protocol):
    def held(self) -> bool:
        """Whether this process may run the job now (taking the lease if it is free). Blocks for a network
        round trip on PostgreSQL: call it off the event loop."""
        ...

    def close(self) -> None: ...


class SoleNode:
    def held(self) -> bool:
        return True

    def close(self) -> None:
        pass


class AdvisoryLease:
    def __init__(self, url: str, job: str) -> None:
        from . import pg_connect

        self._connect = lambda: pg_connect.connect(url, application_name=f"modelport-lease-{job}")
        # Advisory lock keys are one bigint: the first 8 bytes of a digest of the job's name.
        self._key = int.from_bytes(hashlib.sha256(f"modelport/{job}".encode()).digest()[:8], "big", signed=True)
        self._conn: Any = None
        self._held = False
        self._lock = threading.Lock()

    def held(self) -> bool:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn, self._held = self._connect(), False
                if self._held:
                    self._conn.execute("SELECT 1")  # still connected, so still ours
                else:
                    self._held = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()[0]
            except Exception:  # the server or the network is away: nobody here holds it until it is back
                self._drop()
            return self._held

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        self._held = False
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None


def open_lease(settings: Any, job: str) -> Lease:
    if not JOB_NAME.fullmatch(job):
        raise ValueError(f"unknown background job {job!r}")
    return AdvisoryLease(settings.database_url, job) if settings.database_url else SoleNode()
