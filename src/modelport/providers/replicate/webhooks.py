"""The webhook relay: Replicate posts a prediction's events to the gateway, which relays them to the
caller's own URL (docs/webhooks.md).

At create time (``redirect``) the caller's ``webhook`` (or legacy ``webhook_completed``) is checked
against the SSRF rules of custom hosts, and Replicate is given the gateway's relay URL instead, with
the caller's ``webhook_events_filter`` plus ``completed``: the gateway needs the final state for cost.
As the create response passes (``remember``) the caller's URL and filter are stored, keyed by the
prediction's id, so whichever worker or node Replicate's event reaches can relay it, and the
response shows the caller's own URL back.

Each event from Replicate (``receive``) is verified as Standard Webhooks says (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``, keyed by the account's secret from
``GET /webhooks/default/secret``, cached); one more than 5 minutes old, or an id already received, is
refused with a 4xx and not relayed. A verified event is answered 200 at once; then it is recorded in
the prediction's lifecycle as a log record (so its cost is logged even if nobody polls) and relayed to
the caller, its API URLs rewritten as in responses. A final (``completed``) event the caller did not
ask for is not relayed.

Relays are signed the same way with a secret of the caller's own gateway key (``relay_secret``), the
one ``GET /v1/webhooks/default/secret`` returns to that key, so replicate-python's
``webhooks.validate`` works unchanged. It is derived, not stored: HMAC-SHA256 of the slug and the key
id under a server secret in the data dir (``webhook-relay.key``). Every worker using the data dir
derives the same secret with no store read on the delivery path, there is nothing to seal or migrate,
and a key has its secret from its first request; replacing the file rotates every key's secret.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import time
from typing import Any

import orjson

from ...errors import BadRequest, Conflict, ForbiddenHost, GatewayError, Unauthorized, UpstreamUnreachable
from ...hosts import HostRules
from ...log_record import LogRecord
from .pricing import is_terminal
from ..records import PolicyStore, WebhookRelayRow
from ..base import WEBHOOK_ROUTE, Answer, Exchange, Forward, Inbound, UpstreamRequest
from .isolation import json_or_none

log = logging.getLogger("modelport.gateway")

# Under the gateway's /v1 root; the stored provider's slug follows (it names the account whose secret
# signs the events).
RELAY_ROUTE = WEBHOOK_ROUTE[len("/v1"):] + "replicate/"
EVENTS = ("start", "output", "logs", "completed")  # Replicate's webhook_events_filter values
_WEBHOOK_FIELDS = ("webhook", "webhook_completed", "webhook_events_filter")
MAX_AGE_SECONDS = 5 * 60  # Standard Webhooks' suggested tolerance; older events may be replays
# A create's response may still be on its way through another worker when its first event arrives:
# how long an event waits for the create's relay row before it is dropped.
ROW_WAIT_SECONDS, ROW_WAIT_STEP = 2.0, 0.05
SECRET_REFRESH_SECONDS = 60.0
KNOWN_ROWS_LIMIT = 65_536
DELIVERY_READ_LIMIT = SECRET_READ_LIMIT = 1024 * 1024  # what is read of an answer; past it, a failed attempt
DELIVERY_ATTEMPTS, DELIVERY_BACKOFF_SECONDS = 5, 0.05  # 50, 100, 200, 400 ms between attempts
RECEIVED = Answer(200, "application/json", b'{"received":true}')

class WebhookRelay:
    def __init__(self, store: PolicyStore, host_rules: HostRules, relay_key: bytes) -> None:
        self.store = store
        self.host_rules = host_rules
        self._relay_key = hmac.new(relay_key, digestmod=hashlib.sha256)  # keyed once, copied per secret
        self._secrets: dict[str, tuple[str, float]] = {}  # slug → the account's signing secret, when read
        self._tasks: set[asyncio.Task[None]] = set()
        self._rows: dict[tuple[str, str], WebhookRelayRow | None] = {}

    def redirect(self, exchange: Exchange) -> Forward | None:
        """The create's body with the caller's webhook replaced by the gateway's relay URL; None when
        it asks for no webhook (or is not the gateway's to read: no stored account, a body too large)."""
        request = exchange.body_json.or_none() if exchange.target.slug is not None else None
        if not isinstance(request, dict):
            return None
        wanted = callers_webhook(request)
        if wanted is None:
            return None
        url, events = wanted
        self.check_url(url)
        upstream = {name: value for name, value in request.items() if name not in _WEBHOOK_FIELDS}
        upstream["webhook"] = self.relay_url(exchange)
        upstream["webhook_events_filter"] = [event for event in EVENTS if event in events or event == "completed"]
        return Forward(orjson.dumps(upstream))

    @staticmethod
    def relay_url(exchange: Exchange) -> str:
        """Where Replicate posts the events of objects created on this exchange's account."""
        return exchange.public_base + RELAY_ROUTE + (exchange.target.slug or "")

    def check_url(self, url: str) -> None:
        """The SSRF rules of custom hosts (hosts.py): at create time and again at delivery."""
        try:
            self.host_rules.check_stored_host(url)
        except ForbiddenHost as refused:
            raise ForbiddenHost(f"webhook URL refused: {refused.message}") from None

    def relay_secret(self, slug: str, tenant: str) -> str:
        """The secret the relays to ``tenant`` on ``@slug`` are signed with: ``whsec_`` + standard base64
        (no ``_`` in it: replicate-python splits the secret on ``_``)."""
        mac = self._relay_key.copy()
        mac.update(f"replicate-webhook-relay\0{slug}\0{tenant}".encode())
        return "whsec_" + base64.b64encode(mac.digest()[:24]).decode()

    # -- events from Replicate ----------------------------------------------------------------------
    async def receive(self, inbound: Inbound) -> Answer:
        webhook_id, stamp, signature = (inbound.headers.get(name) for name in
                                        ("webhook-id", "webhook-timestamp", "webhook-signature"))
        if not webhook_id or not stamp or not signature:
            raise BadRequest("a Replicate webhook carries webhook-id, webhook-timestamp and webhook-signature "
                             "headers (Standard Webhooks); this request lacks one", code="invalid_webhook")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > MAX_AGE_SECONDS:
            raise BadRequest("webhook-timestamp is not within 5 minutes of the gateway's clock, so the event is "
                             "refused as a possible replay", code="stale_webhook")
        if not await self._verified(inbound, webhook_id, stamp, signature):
            raise Unauthorized("webhook-signature does not match this event under the Replicate account's signing "
                               "secret", code="invalid_webhook_signature")
        prediction = json_or_none(inbound.body)
        if not isinstance(prediction, dict) or not isinstance(prediction.get("id"), str):
            raise BadRequest("a Replicate webhook's body is the prediction as JSON, with its id", code="invalid_webhook")
        slug = inbound.target.slug
        forget_before = int((time.time() - 2 * MAX_AGE_SECONDS) * 1000)
        if not await asyncio.to_thread(self.store.first_receipt, slug, webhook_id, forget_before):
            raise Conflict(f"webhook {webhook_id} was already received; it is not relayed again", code="webhook_replayed")
        task = asyncio.get_running_loop().create_task(self._handle(inbound, webhook_id, prediction))
        self._tasks.add(task)  # held: the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)
        return RECEIVED

    async def _verified(self, inbound: Inbound, webhook_id: str, stamp: str, signature: str) -> bool:
        """Checked with the cached secret, and once more with a fresh one (the account's may have been
        rotated), but not more than once a minute: this route needs no key, and a stream of forged
        events must not become a stream of requests to Replicate."""
        slug: str = inbound.target.slug  # type: ignore[assignment]  # the route resolved a stored provider
        cached = self._secrets.get(slug)
        if cached is not None:
            secret, fetched_at = cached
            if signature_matches(secret, webhook_id, stamp, inbound.body, signature):
                return True
            if time.monotonic() - fetched_at < SECRET_REFRESH_SECONDS:
                return False
        secret = await self._account_secret(inbound)
        self._secrets[slug] = (secret, time.monotonic())
        return signature_matches(secret, webhook_id, stamp, inbound.body, signature)

    async def _account_secret(self, inbound: Inbound) -> str:
        target = inbound.target
        try:
            answer = await inbound.api.fetch("GET", "/webhooks/default/secret", SECRET_READ_LIMIT)
            found = json_or_none(answer.body) if answer.status == 200 else None
        except GatewayError as error:  # the transport's or the auth hook's, said in words
            log.warning("could not read the webhook secret of @%s: %s", target.slug, error.message)
            found = None
        if not isinstance(found, dict) or not isinstance(found.get("key"), str):
            raise UpstreamUnreachable(f"the gateway could not read the webhook signing secret of @{target.slug} from "
                                      "Replicate to verify this event; Replicate retries the final event")
        return found["key"]

    async def _handle(self, inbound: Inbound, webhook_id: str, prediction: dict[str, Any]) -> None:
        try:
            await self._record_and_relay(inbound, webhook_id, prediction)
        except Exception:  # a background task: nobody else would hear of it
            log.exception("webhook %s for %s on @%s was not relayed", webhook_id, prediction["id"], inbound.target.slug)

    async def _record_and_relay(self, inbound: Inbound, webhook_id: str, prediction: dict[str, Any]) -> None:
        slug, object_id = inbound.target.slug, prediction["id"]
        row = await self._row(slug, object_id)  # type: ignore[arg-type]
        self._record_receipt(inbound, webhook_id, prediction, row)
        if row is None:
            log.warning("a webhook for %s on @%s has nowhere to go: no create through the gateway asked for it",
                        object_id, slug)
            return
        if is_terminal(prediction.get("status")) and "completed" not in row.events:
            return  # the gateway asked for the final event for itself (cost), not for the caller
        show_row(prediction, row)
        body = inbound.rewrite(orjson.dumps(prediction), row.key_id, _trace(webhook_id))
        await self._deliver(inbound, row, webhook_id, object_id, body)

    def remembered_row(self, slug: str, object_id: str, *, final_if_absent: bool = True) -> WebhookRelayRow | None:
        """The relay row of an object a caller names, from memory where it can. A row never changes;
        its absence is final too for an id the caller got from its create's response (which waited for
        the row's write), but not for one seen in a list (``final_if_absent=False``): a list may show a
        create still passing through another worker. One store read per id and worker, made in a thread by
        ``look_up_row`` before the request is forwarded."""
        key = (slug, object_id)
        if key in self._rows:
            return self._rows[key]
        row = self.store.webhook_of(slug, object_id)
        if row is not None or final_if_absent:
            if len(self._rows) >= KNOWN_ROWS_LIMIT:
                self._rows.clear()  # as isolation's owners: simpler than an LRU, refilled by the next reads
            self._rows[key] = row
        return row

    async def look_up_row(self, slug: str, object_id: str) -> None:
        """Bring an object's row into memory in a thread (on PostgreSQL a read is a network round trip,
        which must not hold the event loop), for ``remembered_row`` to find it there."""
        if (slug, object_id) not in self._rows:
            await asyncio.to_thread(self.remembered_row, slug, object_id)

    async def _row(self, slug: str, object_id: str) -> WebhookRelayRow | None:
        deadline = time.monotonic() + ROW_WAIT_SECONDS
        while True:
            row = await asyncio.to_thread(self.store.webhook_of, slug, object_id)
            if row is not None or time.monotonic() > deadline:
                return row
            await asyncio.sleep(ROW_WAIT_STEP)

    def _record_receipt(self, inbound: Inbound, webhook_id: str, prediction: dict[str, Any],
                        row: WebhookRelayRow | None) -> None:
        """The event as one more sighting of the prediction, logged like a poll (providers/replicate/ledger.py reads
        its body), so the prediction is priced when its end arrives here, polled or not."""
        slug = inbound.target.slug
        record = LogRecord(trace_id=_trace(webhook_id), method="GET", path=f"/v1/predictions/{prediction['id']}",
                           provider="replicate", slug=slug, key_id=row.key_id if row else None,
                           key_name="replicate webhook", metadata={"modelport_webhook": "received", "webhook_id": webhook_id})
        record.attempt("webhook", "replicate", slug).status = 200
        record.answered(200, len(inbound.body), "application/json", inbound.body)
        inbound.submit(record)

    async def _deliver(self, inbound: Inbound, row: WebhookRelayRow, webhook_id: str, object_id: str,
                       body: bytes) -> None:
        """POST the event to the caller, retried on 5xx, connection errors and timeouts (Replicate itself
        retries only the final event), with the same webhook-id each time; a 4xx is the caller's final
        word. Each attempt is a log record, in the prediction's lifecycle."""
        secret = self.relay_secret(inbound.target.slug, row.key_id)  # type: ignore[arg-type]
        for attempt in range(DELIVERY_ATTEMPTS):
            if attempt:
                await asyncio.sleep(DELIVERY_BACKOFF_SECONDS * 2 ** (attempt - 1))
            record = LogRecord(trace_id=_trace(webhook_id), method="POST", path=row.url, provider="replicate",
                               slug=inbound.target.slug, key_id=row.key_id, key_name="replicate webhook relay",
                               prediction_id=object_id, retry_count=attempt, request_bytes=len(body), request_body=body,
                               metadata={"modelport_webhook": "delivery", "webhook_id": webhook_id,
                                         "attempt": str(attempt + 1)})
            status = await self._attempt(inbound, row.url, webhook_id, secret, body, record)
            inbound.submit(record)
            if status is not None and status < 500:
                return  # delivered (2xx, 3xx) or refused for good (4xx)

    async def _attempt(self, inbound: Inbound, url: str, webhook_id: str, secret: str, body: bytes,
                       record: LogRecord) -> int | None:
        """One POST; its status, or None when it never got one (recorded as the error)."""
        stamp = str(int(time.time()))  # fresh each attempt: the caller's tolerance counts from the send
        headers = {"content-type": "application/json", "webhook-id": webhook_id, "webhook-timestamp": stamp,
                   "webhook-signature": sign(secret, webhook_id, stamp, body)}
        started = time.perf_counter()
        try:
            self.check_url(url)  # again: an address literal the rules changed on, or a name the resolver checks
            # No redirects (the transport follows none): one would lead past the SSRF check just made.
            answer = await inbound.transport(not self.host_rules.trusts(url)).fetch(
                UpstreamRequest("POST", url, headers, body), DELIVERY_READ_LIMIT)
            record.answered(answer.status, len(answer.body), answer.headers.get("content-type", ""), answer.body)
            return answer.status
        except ForbiddenHost as refused:
            record.failed(refused.status, refused.message)
            return refused.status  # final: the rules will not change between attempts
        except GatewayError as error:  # no answer (connection, timeout): retried
            record.failed(error.status, f"webhook delivery failed: {error.message}", gateway_exception=False)
            return None
        finally:
            record.finished(started)
            record.upstream_latency_ms = record.latency_ms

    async def remember(self, exchange: Exchange, tenant: str, created: dict[str, Any]) -> bool:
        """Store where the caller wants the new object's events; put its own URL back into the response.
        True when the response was changed."""
        wanted = callers_webhook(exchange.body_json.or_none())
        if wanted is None or not isinstance(created.get("id"), str):
            return False
        url, events = wanted
        slug = exchange.target.slug
        try:
            # A thread, like the owner's write: SQLite may wait on its lock, the event loop must not.
            await asyncio.to_thread(self.store.record_webhook, slug, created["id"], tenant, url, events)
        except Exception:  # whatever the store raises: the caller must hear that no event will reach it
            log.exception("could not record the webhook of Replicate prediction %s on @%s", created["id"], slug)
            raise GatewayError(f"Replicate created {created['id']}, but the gateway could not record where to relay "
                               "its webhook events (the store did not answer), so none will reach you; poll it "
                               "instead") from None
        show_callers_webhook(created, exchange.body_json.or_none())
        return True


def callers_webhook(request: Any) -> tuple[str, tuple[str, ...]] | None:
    """The URL and events a create asks for, validated; None when it asks for no webhook."""
    if not isinstance(request, dict):
        return None
    url, legacy, events = (request.get(name) for name in _WEBHOOK_FIELDS)
    if url is None and legacy is None:
        if events is not None:
            raise BadRequest("webhook_events_filter needs a webhook URL to send the events to", code="invalid_webhook")
        return None
    if url is not None and legacy is not None:
        raise BadRequest("send either webhook or the legacy webhook_completed, not both", code="invalid_webhook")
    if not isinstance(url or legacy, str):
        raise BadRequest("webhook must be a URL string, such as https://example.com/replicate-hook", code="invalid_webhook")
    if legacy is not None:
        if events is not None:
            raise BadRequest("webhook_completed sends only the completed event; to choose events, send webhook "
                             "with webhook_events_filter", code="invalid_webhook")
        return legacy, ("completed",)
    if events is None:
        return url, EVENTS  # Replicate's default: every event
    if not isinstance(events, list) or not events or any(event not in EVENTS for event in events):
        raise BadRequest(f"webhook_events_filter must be a list of events from {', '.join(EVENTS)}",
                         code="invalid_webhook")
    return url, tuple(event for event in EVENTS if event in events)


def show_row(prediction: dict[str, Any], row: WebhookRelayRow) -> None:
    """Show the caller its own webhook and events where the prediction shows the gateway's."""
    if "webhook" in prediction:
        prediction["webhook"] = row.url
    if "webhook_events_filter" in prediction:
        prediction["webhook_events_filter"] = list(row.events)


def show_callers_webhook(prediction: dict[str, Any], request: Any) -> None:
    """Show the caller its own webhook and filter (as it sent them), not the gateway's."""
    if "webhook" not in prediction and "webhook_completed" not in prediction:
        return  # this response never showed one
    for name in _WEBHOOK_FIELDS:
        prediction.pop(name, None)
    for name in _WEBHOOK_FIELDS:
        if isinstance(request, dict) and name in request:
            prediction[name] = request[name]


def signature_matches(secret: str, webhook_id: str, stamp: str, body: bytes, signature: str) -> bool:
    """Standard Webhooks: one of the space-separated ``v1,<base64>`` signatures is the HMAC-SHA256 of
    ``id.timestamp.body`` keyed by the secret's base64 part (after ``whsec_``)."""
    expected = _signature(secret, webhook_id, stamp, body)
    if expected is None:
        return False
    offered = (part.partition(",") for part in signature.split())
    return any(version == "v1" and hmac.compare_digest(value.encode(), expected) for version, _, value in offered)


def sign(secret: str, webhook_id: str, stamp: str, body: bytes) -> str:
    signature = _signature(secret, webhook_id, stamp, body)
    assert signature is not None, "the gateway's own secrets are well formed"
    return "v1," + signature.decode()


def _signature(secret: str, webhook_id: str, stamp: str, body: bytes) -> bytes | None:
    try:
        key = base64.b64decode(secret.partition("_")[2], validate=True)
    except (binascii.Error, ValueError):
        return None
    digest = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest)


def _trace(webhook_id: str) -> str:
    return f"webhook-{webhook_id}"
