"""Replicate's ``ExchangePolicy`` (providers/base.py): tenant isolation (isolation.py, when
``replicate_isolate_predictions`` is on) and the webhook relay (webhooks.py, always), in that order."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from ...hosts import HostRules
from ...node_secrets import signing_key
from ..records import PolicyStore, WebhookRelayRow
from ..base import Answer, Exchange, Forward, Inbound
from .isolation import Isolation, json_or_none, tenant_of
from .paths import created_kind, is_webhook_secret, listed_collection, object_ref
from .webhooks import WebhookRelay, show_row

def make_policy(settings: Any, store: PolicyStore) -> "ReplicatePolicy":
    isolation = Isolation(store) if settings.replicate_isolate_predictions else None
    relay_key = signing_key(settings, "webhook-relay")
    return ReplicatePolicy(isolation, WebhookRelay(store, HostRules.from_settings(settings), relay_key))


class ReplicatePolicy:
    def __init__(self, isolation: Isolation | None, relay: WebhookRelay) -> None:
        self.isolation = isolation
        self.relay = relay

    async def authorize(self, exchange: Exchange) -> Answer | Forward | None:
        if exchange.method == "GET" and is_webhook_secret(exchange.path) and not exchange.admin \
                and exchange.target.slug is not None:
            # The account's secret would let this key forge events for every other key; its relays are
            # signed with its own (webhooks.py), so that is the secret it gets.
            secret = self.relay.relay_secret(exchange.target.slug, tenant_of(exchange))
            return Answer(200, "application/json", orjson.dumps({"key": secret}))
        if self.isolation is not None:
            answer = await self.isolation.authorize(exchange)
            if answer is not None:
                return answer
        ref = self._polled_ref(exchange)
        if ref is not None:  # looked up here, off the loop, so wants_screen finds it in memory
            await self.relay.look_up_row(exchange.target.slug, ref.id)  # type: ignore[arg-type]
        return self.relay.redirect(exchange) if _runs_something(exchange) else None

    async def receive_webhook(self, inbound: Inbound) -> Answer:
        """An event Replicate posted to the relay URL a create was given (gateway/provider_webhooks.py)."""
        return await self.relay.receive(inbound)

    def wants_screen(self, exchange: Exchange) -> bool:
        isolated = self.isolation is not None and self.isolation.wants_screen(exchange)
        return isolated or _relayed(exchange) or self._relay_row(exchange) is not None

    async def screen(self, exchange: Exchange, status: int, body: bytes) -> bytes:
        isolated = self.isolation is not None and self.isolation.wants_screen(exchange)
        if isolated:
            body = await self.isolation.screen(exchange, status, body)  # type: ignore[union-attr]
        if not 200 <= status < 300:
            return body
        if _relayed(exchange):
            created = json_or_none(body)
            if isinstance(created, dict) and await self.relay.remember(exchange, tenant_of(exchange), created):
                body = orjson.dumps(created)
        elif (row := self._relay_row(exchange)) is not None:
            polled = json_or_none(body)
            if isinstance(polled, dict) and polled.get("id") == object_ref(exchange.path).id:  # type: ignore[union-attr]
                show_row(polled, row)
                body = orjson.dumps(polled)
        elif isolated and listed_collection(exchange.method, exchange.path) is not None:
            body = await self._show_rows_in_page(exchange, body)  # already read whole for isolation
        return body

    def _relay_row(self, exchange: Exchange) -> WebhookRelayRow | None:
        """The relay row of the prediction or training a poll or cancel names, if it has one: the
        response then shows the caller's webhook, not the gateway's."""
        ref = self._polled_ref(exchange)
        return None if ref is None else self.relay.remembered_row(exchange.target.slug, ref.id)  # type: ignore[arg-type]

    @staticmethod
    def _polled_ref(exchange: Exchange) -> Any:
        ref = object_ref(exchange.path) if exchange.target.slug is not None else None
        if ref is None or ref.collection == "files" or exchange.method not in ("GET", "POST"):
            return None
        return ref

    async def _show_rows_in_page(self, exchange: Exchange, body: bytes) -> bytes:
        page = json_or_none(body)
        results = page.get("results") if isinstance(page, dict) else None
        relay_url = self.relay.relay_url(exchange)
        items = [item for item in results or () if isinstance(item, dict) and isinstance(item.get("id"), str)
                 and item.get("webhook") == relay_url]
        if not items:
            return body
        slug = exchange.target.slug
        rows = await asyncio.to_thread(lambda: [self.relay.remembered_row(slug, item["id"], final_if_absent=False)
                                                for item in items])
        for item, row in zip(items, rows):
            if row is not None:
                show_row(item, row)
        return orjson.dumps(page)


def _runs_something(exchange: Exchange) -> bool:
    """A create of a prediction or a training: the requests that may carry a webhook."""
    return created_kind(exchange.method, exchange.path) in ("prediction", "training")


def _relayed(exchange: Exchange) -> bool:
    """A create the relay may have redirected (its create response must then be remembered)."""
    return exchange.target.slug is not None and exchange.body is not None and _runs_something(exchange)
