"""How a request reaches Vertex AI with Google credentials: ``Authorization: Bearer <access token>``.

The token is minted from the service-account key in the ``vertex_service_account_json`` setting
(stored sealed, or sent by the caller in ``x-portkey-vertex-service-account-json``) through the
gateway's transport, cached and refreshed by ``token.TokenCache``; without a key, the caller's own
access token (``Authorization: Bearer ya29...``, as Portkey takes it) is sent as it is.
"""

from __future__ import annotations

from typing import Callable

from ...gateway.errors import Unauthorized
from ..base import Target, Transport, UpstreamRequest
from .token import TokenCache


class VertexAuth:
    """The ``ProviderAuth`` of ``vertex-ai``; one per worker, holding its token cache."""

    def __init__(self, trusted_host: Callable[[str], bool] = lambda host: False) -> None:
        self.tokens = TokenCache(trusted_host)

    def trust(self, trusted_host: Callable[[str], bool]) -> None:
        """Take the operator's word on token hosts outside Google's (``trusted_hosts``)."""
        self.tokens = TokenCache(trusted_host)

    async def authorize(self, request: UpstreamRequest, target: Target, transport: Transport) -> None:
        account = target.settings.get("vertex_service_account_json")
        if account:
            token = await self.tokens.token(account, transport.fetch)
        elif target.api_key:
            token = target.api_key
        else:
            raise Unauthorized("provider 'vertex-ai' needs Google credentials: a service-account key "
                               "(vertex_service_account_json on the stored provider, or the header "
                               "x-portkey-vertex-service-account-json) or an access token (Authorization: Bearer ...)",
                               code="missing_vertex_credentials")
        request.headers["authorization"] = f"Bearer {token}"


VERTEX_AUTH = VertexAuth()
