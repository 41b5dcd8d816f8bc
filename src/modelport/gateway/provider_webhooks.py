"""Where providers post webhook events: ``/v1/provider-webhooks/<provider id>/<stored provider slug>``.

The provider sends no gateway key, so there is none to check: the provider's policy verifies each
event itself (Replicate's signature: providers/replicate/webhooks.py). This route only finds the
stored provider and its policy, hands over the event and what relaying it needs, and sends back the
policy's answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..asgi import Receive, Scope, Send, read_body, send_error, send_response
from ..errors import GatewayError, MethodNotAllowed, NotFound, UnknownProvider
from ..providers.base import WEBHOOK_ROUTE, Inbound, ProviderApi
from ..providers.registry import get_provider
from ..providers.rewrite import public_base
from ..transport.send import UpstreamClient

if TYPE_CHECKING:
    from .pipeline import Gateway

CALL_SECONDS = 10.0  # each call a policy makes for an event (Replicate: its account's secret, each delivery)


async def receive_provider_webhook(gateway: "Gateway", scope: Scope, receive: Receive, send: Send, rest: str) -> None:
    try:
        provider, _, slug = rest.partition("/")
        spec = get_provider(provider)
        receiver = getattr(gateway.policy_for(spec), "receive_webhook", None) if spec is not None else None
        if receiver is None or not slug or "/" in slug:
            raise NotFound(f"no provider webhook route {WEBHOOK_ROUTE}{rest}: the gateway gives providers this URL itself")
        if scope["method"] != "POST":
            raise MethodNotAllowed("providers POST their webhook events here")
        try:
            resolved = gateway.resolver.stored(slug)
        except UnknownProvider:
            raise NotFound(f"no stored provider '@{slug}' for this webhook") from None
        if resolved.spec.id != spec.id:  # type: ignore[union-attr]
            raise NotFound(f"@{slug} is not a {provider} provider")
        body = await read_body(receive, gateway.settings.max_body_bytes)
        transport = _transports(gateway)
        api = ProviderApi(resolved.spec, resolved.target, transport(resolved.caller_chosen_host),
                          gateway.transport_for(resolved.spec))
        inbound = Inbound(resolved.target, {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
                          body, api, transport, _rewriting(gateway, resolved, public_base(gateway.settings.public_url, scope)),
                          gateway.recorder.submit)
        answer = await receiver(inbound)
        await send_response(send, answer.status, [(b"content-type", answer.content_type.encode("latin-1"))], answer.body)
    except GatewayError as error:
        await send_error(send, error, "")


def _transports(gateway: "Gateway") -> Callable[[bool], UpstreamClient]:
    """The relay's calls (reading the account's secret, delivering to the caller) on the pooled sessions,
    each within ``CALL_SECONDS``; ``True`` picks the SSRF-guarded side."""
    settings = gateway.settings
    sides = {guarded: UpstreamClient(gateway.upstreams, "the webhook relay", CALL_SECONDS, guarded=guarded,
                                     allow_private=settings.allow_private_hosts, timeout_name="the relay's limit")
             for guarded in (False, True)}
    return sides.__getitem__


def _rewriting(gateway: "Gateway", resolved: Any, gateway_base: str) -> Callable[[bytes, str | None, str], bytes]:
    """Absolute API URLs in a relayed body rewritten as in the provider's responses (providers/rewrite.py)."""
    rule, target = resolved.spec.rewrite, resolved.target

    def rewrite(body: bytes, key_id: str | None, trace_id: str) -> bytes:
        if rule is None:
            return body

        def sign(url: str, object_id: str | None) -> str:
            return gateway.signer.link(gateway_base, url, g=resolved.caller_chosen_host, t=trace_id,
                                       p=resolved.spec.id, s=target.slug, k=key_id, i=object_id)

        return rule.body(body, target.base_url, gateway_base, sign)

    return rewrite
