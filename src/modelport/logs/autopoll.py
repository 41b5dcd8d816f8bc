"""Polls provider jobs nobody polls (fire-and-forget callers), so their cost is recorded too.

The jobs are the open entries of the log store's ledger for one provider (``LogStore.open_predictions``);
where a job is read is the provider's (``ProviderJobs.poll_path``: Replicate's ``/predictions/{id}``).
Each poll becomes a log record like any other, tagged ``metadata.modelport_autopoll``, which the writer
enriches through the same hook as a caller's poll. One node polls for the whole gateway (a lease).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from ..providers.base import JobUpstream
from ..log_record import Attempt, LogRecord

log = logging.getLogger("modelport.logs")


@dataclass(frozen=True, slots=True)
class OpenJob:
    """A job that has not ended: ``path`` is where its provider answers it, after the API root."""

    id: str
    provider: str
    slug: str
    key_id: str | None
    path: str
    upstream: JobUpstream


class AutoPoller:
    def __init__(
        self,
        find_open: Callable[[], Awaitable[list[OpenJob]]],
        session: Callable[[], aiohttp.ClientSession],
        submit: Callable[[LogRecord], None],
        interval: float,
        concurrency: int = 4,
    ) -> None:
        self._find_open = find_open
        self._session = session
        self._submit = submit
        self._interval = interval
        self._limit = asyncio.Semaphore(concurrency)
        self._in_flight: set[str] = set()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                found = await self._find_open()
            except Exception as exc:  # a store busy or away (logs or keys): try again next round
                log.warning("autopoll: could not list open jobs: %s", exc)
                continue
            await asyncio.gather(*(self._poll(job) for job in found if job.id not in self._in_flight))

    async def _poll(self, job: OpenJob) -> None:
        self._in_flight.add(job.id)
        record = LogRecord(trace_id=f"autopoll-{job.id}", method="GET", path=f"/v1{job.path}", provider=job.provider,
                           slug=job.slug, key_id=job.key_id, key_name="modelport autopoll",
                           metadata={"modelport_autopoll": "true"})
        span = Attempt(index="autopoll", provider=job.provider, slug=job.slug, started_at=time.time())
        record.attempts.append(span)
        started = time.perf_counter()
        try:
            async with self._limit, self._session().get(
                f"{job.upstream.base_url}{job.path}",
                headers=dict(job.upstream.headers),
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response:
                body = await response.read()
                record.status = span.status = response.status
                record.response_bytes, record.response_body = len(body), body
                record.response_content_type = response.headers.get("content-type", "")
        except (TimeoutError, aiohttp.ClientError) as exc:
            record.status = span.status = 502
            record.error = span.error = f"autopoll failed: {type(exc).__name__}: {exc}"
        finally:
            span.latency_ms = record.latency_ms = (time.perf_counter() - started) * 1000
            record.upstream_latency_ms = span.latency_ms
            self._in_flight.discard(job.id)
        self._submit(record)
