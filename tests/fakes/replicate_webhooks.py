"""Webhooks as Replicate sends them: Standard Webhooks-signed POSTs of the prediction, as it runs.

A job created with ``webhook`` runs by itself (one step every ``WEBHOOK_STEP_SECONDS``, as if on a
worker: nobody needs to poll it) and POSTs its state to the URL on each event its
``webhook_events_filter`` names (all four when it names none): ``start``, ``output`` and ``logs`` as
they change, ``completed`` at the end. Only the ``completed`` delivery is retried [docs: "Replicate
retries the final webhook request"], with the same ``webhook-id``. Every attempt is kept in
``state.webhook_deliveries``.

Signature [Standard Webhooks, Replicate's docs]: ``webhook-signature: v1,<base64 HMAC-SHA256>`` of
``"{webhook-id}.{webhook-timestamp}.{body}"``, keyed by the base64 part of the account's ``whsec_``
secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp

from tests.fakes.replicate_catalog import WEBHOOK_SECRET

WEBHOOK_STEP_SECONDS = 0.05
FINAL_ATTEMPTS = 4
FINAL_BACKOFF_SECONDS = 0.1


@dataclass
class Delivery:
    """One POST the fake made to a webhook URL."""

    url: str
    webhook_id: str
    event: str
    status: int | None  # None: the connection failed
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def sign(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.split("_", 1)[1])
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(body: bytes, webhook_id: str | None = None, timestamp: int | None = None,
                   secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    """The headers Replicate sends with ``body`` (a test can also forge an old or replayed one)."""
    webhook_id = webhook_id or "msg_" + secrets.token_hex(12)
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {"content-type": "application/json", "webhook-id": webhook_id, "webhook-timestamp": stamp,
            "webhook-signature": sign(secret, webhook_id, stamp, body)}


async def run_with_webhooks(state: Any, job: Any, advance: Callable[[Any, Any], None],
                            render: Callable[[Any], dict[str, Any]]) -> None:
    """Drive ``job`` to its end, delivering each wanted event as it happens."""
    wanted = set(job.webhook_events_filter or ("start", "output", "logs", "completed"))
    seen_output, seen_logs, started = None, "", False
    async with aiohttp.ClientSession() as session:
        await asyncio.sleep(WEBHOOK_STEP_SECONDS)  # the create's response goes out first, as on a real worker
        while True:
            if not started and "start" in wanted:
                await _deliver(session, state, job, "start", render, attempts=1)
            started = True
            if job.terminal:
                if "completed" in wanted:
                    await _deliver(session, state, job, "completed", render, attempts=FINAL_ATTEMPTS)
                return
            if job.output != seen_output and job.output is not None and "output" in wanted:
                await _deliver(session, state, job, "output", render, attempts=1)
            elif job.logs != seen_logs and "logs" in wanted:
                await _deliver(session, state, job, "logs", render, attempts=1)
            seen_output, seen_logs = job.output, job.logs
            await asyncio.sleep(WEBHOOK_STEP_SECONDS)
            advance(state, job)


async def _deliver(session: aiohttp.ClientSession, state: Any, job: Any, event: str,
                   render: Callable[[Any], dict[str, Any]], attempts: int) -> None:
    body = json.dumps(render(job)).encode()
    webhook_id = "msg_" + secrets.token_hex(12)
    for attempt in range(attempts):
        headers = signed_headers(body, webhook_id)
        status: int | None = None
        try:
            async with session.post(job.webhook, data=body, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=5)) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            pass
        state.webhook_deliveries.append(Delivery(job.webhook, webhook_id, event, status, headers, body))
        if status is not None and 200 <= status < 300:
            return
        if attempt + 1 < attempts:
            await asyncio.sleep(FINAL_BACKOFF_SECONDS * 2 ** attempt)
