"""The values a request upstream and its answer travel as: built by adapters and the proxy route,
signed by a provider's auth hook, sent by the transport (``send.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol


@dataclass(slots=True)
class UpstreamRequest:
    """A request to send upstream. Adapters build it without the credential; the provider's
    ``ProviderAuth`` adds that last, seeing the request as it will be sent (gateway/forward.py
    ``send_to_provider``). ``stream_body``: the body streams through unread (a large proxied upload),
    so ``body`` is None although the request has one."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    stream: bool = False
    stream_body: bool = False


@dataclass(frozen=True, slots=True)
class StepAnswer:
    """One step's response, read whole: status, headers (lower-case names) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """The gateway's upstream transport for a ``ProviderAuth``'s own calls (a token exchange): pooled,
    SSRF-checked (private hosts only under MODELPORT_ALLOW_PRIVATE_HOSTS), timed, and failing with the
    gateway's errors (errors.py). The request goes as given: no provider credential is added."""

    async def fetch(self, request: UpstreamRequest, limit: int) -> StepAnswer:
        """Send ``request`` and read its whole response, up to ``limit`` bytes (a 502 past it)."""
        ...
