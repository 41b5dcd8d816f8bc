"""ModelPort: a fast, self-hosted AI gateway that speaks the Portkey gateway protocol.

The public Python names are the SDK's (``modelport.client``)::

    from modelport import ModelPort, GATEWAY_URL, create_headers
"""

from .client import (
    GATEWAY_URL,
    AsyncModelPort,
    ModelPort,
    Response,
    ServerSentEvent,
    create_headers,
    createHeaders,
)

__all__ = ["GATEWAY_URL", "AsyncModelPort", "ModelPort", "Response", "ServerSentEvent", "createHeaders", "create_headers"]
__version__ = "0.1.0"
