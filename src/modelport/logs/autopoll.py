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

from ..errors import GatewayError
from ..providers.base import ProviderApi
from ..log_record import Attempt, LogRecord

log = logging.getLogger("modelport.logs")
POLL_SECONDS = 30.0
POLL_READ_LIMIT = 32 * 1024 * 1024  # a prediction with its output inline; the gateway reads no more of a response


@dataclass(frozen=True, slots=True)
class OpenJob:
    """A job that has not ended: ``path`` is where its provider answers it, after the API root."""

    id: str
    provider: str
    slug: str
    key_id: str | None
    path: str
    upstream: ProviderApi


class AutoPoller:
    def __init__(
        self,
        find_open: Callable[[], Awaitable[list[OpenJob]]],
        submit: Callable[[LogRecord], None],
        interval: float,
        concurrency: int = 4,
    ) -> None:
        self._find_open = find_open
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
            async with self._limit, asyncio.timeout(POLL_SECONDS):
                answer = await job.upstream.fetch("GET", job.path, POLL_READ_LIMIT)
            record.status = span.status = answer.status
            record.response_bytes, record.response_body = len(answer.body), answer.body
            record.response_content_type = answer.headers.get("content-type", "")
        except TimeoutError:
            record.status = span.status = 504
            record.error = span.error = f"autopoll failed: no answer within {POLL_SECONDS:g} s"
        except GatewayError as error:  # the transport's (connection, body) or the auth hook's refusal
            record.status = span.status = error.status
            record.error = span.error = f"autopoll failed: {error.message}"
        finally:
            span.latency_ms = record.latency_ms = (time.perf_counter() - started) * 1000
            record.upstream_latency_ms = span.latency_ms
            self._in_flight.discard(job.id)
        self._submit(record)
