"""ModelPort: a fast, self-hosted AI gateway that speaks the Portkey gateway protocol.

The public Python names are the SDK's (``modelport.client``), errors included::

    from modelport import ModelPort, GATEWAY_URL, create_headers, APIStatusError, RateLimitError
"""

from .client import (
    GATEWAY_URL,
    APIConnectionError,
    APIError,
    APIStatusError,
    APIStreamError,
    APITimeoutError,
    AsyncModelPort,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GatewayTimeoutError,
    InternalServerError,
    ModelPort,
    ModelPortError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    Response,
    ServerSentEvent,
    UnprocessableEntityError,
    create_headers,
    createHeaders,
)

__all__ = [
    "GATEWAY_URL",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APIStreamError",
    "APITimeoutError",
    "AsyncModelPort",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "GatewayTimeoutError",
    "InternalServerError",
    "ModelPort",
    "ModelPortError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "Response",
    "ServerSentEvent",
    "UnprocessableEntityError",
    "createHeaders",
    "create_headers",
]
__version__ = "0.1.0"
