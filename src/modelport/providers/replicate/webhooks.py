"""The webhook relay: Replicate posts a prediction's events to the gateway, which relays them to the
caller's own URL (docs/webhooks.md).

At create time (``redirect``) the caller's ``webhook`` (or legacy ``webhook_completed``) is checked
against the SSRF rules of custom hosts, and Replicate is given the gateway's relay URL instead, with
the caller's ``webhook_events_filter`` plus ``completed``: the gateway needs the final state for cost.
As the create response passes (``remember``) the caller's URL and filter are stored, keyed by the
prediction's id, so whichever worker or node Replicate's event reaches can relay it, and the
response shows the caller's own URL back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from ...gateway.errors import BadRequest, GatewayError
from ...gateway.hosts import HostRules
from ..base import Exchange, Forward
from .isolation import json_or_none

log = logging.getLogger("modelport.gateway")

# Under the gateway's /v1 root; the stored provider's slug follows (it names the account whose secret
# signs the events). gateway/provider_webhooks.py routes it to the provider's policy.
RELAY_ROUTE = "/provider-webhooks/replicate/"
EVENTS = ("start", "output", "logs", "completed")  # Replicate's webhook_events_filter values
_WEBHOOK_FIELDS = ("webhook", "webhook_completed", "webhook_events_filter")


class WebhookRelay:
    def __init__(self, store: Any, host_rules: HostRules) -> None:
        self.store = store
        self.host_rules = host_rules

    def redirect(self, exchange: Exchange) -> Forward | None:
        """The create's body with the caller's webhook replaced by the gateway's relay URL; None when
        it asks for no webhook (or is not the gateway's to read: no stored account, a body too large)."""
        request = json_or_none(exchange.body) if exchange.target.slug is not None else None
        if not isinstance(request, dict):
            return None
        wanted = callers_webhook(request)
        if wanted is None:
            return None
        url, events = wanted
        self.check_url(url)
        upstream = {name: value for name, value in request.items() if name not in _WEBHOOK_FIELDS}
        upstream["webhook"] = exchange.public_base + RELAY_ROUTE + exchange.target.slug  # type: ignore[operator]
        upstream["webhook_events_filter"] = [event for event in EVENTS if event in events or event == "completed"]
        return Forward(orjson.dumps(upstream))

    def check_url(self, url: str) -> None:
        """The SSRF rules of custom hosts (gateway/hosts.py): at create time and again at delivery."""
        self.host_rules.check_stored_host(url)

    async def remember(self, exchange: Exchange, tenant: str, created: dict[str, Any]) -> bool:
        """Store where the caller wants the new object's events; put its own URL back into the response.
        True when the response was changed."""
        wanted = callers_webhook(json_or_none(exchange.body))
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
        show_callers_webhook(created, json_or_none(exchange.body))
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


def show_callers_webhook(prediction: dict[str, Any], request: Any) -> None:
    """Show the caller its own webhook and filter (as it sent them), not the gateway's."""
    if "webhook" not in prediction and "webhook_completed" not in prediction:
        return  # this response never showed one
    for name in _WEBHOOK_FIELDS:
        prediction.pop(name, None)
    for name in _WEBHOOK_FIELDS:
        if isinstance(request, dict) and name in request:
            prediction[name] = request[name]
