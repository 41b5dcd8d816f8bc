"""How a request reaches Vertex AI with Google credentials: ``Authorization: Bearer <access token>``.

The token is minted from the service-account key in the ``vertex_service_account_json`` setting
(stored sealed, or sent by the caller in ``x-portkey-vertex-service-account-json``) through the
gateway's transport, cached and refreshed by ``token.TokenCache``; without a key, the caller's own
access token (``Authorization: Bearer ya29...``, as Portkey takes it) is sent as it is.
"""

from __future__ import annotations

from ...errors import BadRequest
from ..base import Target, Transport, UpstreamRequest
from .token import TokenCache


class VertexAuth:
    """The ``ProviderAuth`` of ``vertex-ai``; one per worker, holding its token cache."""

    def __init__(self) -> None:
        self.tokens = TokenCache()

    async def authorize(self, request: UpstreamRequest, target: Target, transport: Transport) -> None:
        account = target.settings.get("vertex_service_account_json")
        if account:
            token = await self.tokens.token(account, transport.fetch, request.url)
        elif target.api_key:
            token = target.api_key
        else:
            raise BadRequest("provider 'vertex-ai' needs Google credentials: a service-account key "
                               "(vertex_service_account_json on the stored provider, or the header "
                               "x-portkey-vertex-service-account-json) or an access token (Authorization: Bearer ...)",
                               code="missing_vertex_credentials")
        request.headers["authorization"] = f"Bearer {token}"


VERTEX_AUTH = VertexAuth()
