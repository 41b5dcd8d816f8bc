"""The ModelPort Python SDK.

    from modelport.client import ModelPort
    client = ModelPort(api_key="mp-...", provider="@replicate-prod")
    prediction = client.post("/predictions", version="...", input={"prompt": "a lighthouse"})

Guide: ``docs/sdk.md``.
"""

from ._client import DEFAULT_BASE_URL, GATEWAY_URL, AsyncModelPort, ModelPort
from ._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APIStreamError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GatewayTimeoutError,
    InternalServerError,
    ModelPortError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)
from ._headers import create_headers, createHeaders
from ._response import APIObject, Response
from ._streaming import (
    AsyncChunkStream,
    AsyncStream,
    ChunkStream,
    ServerSentEvent,
    Stream,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIObject",
    "APIStatusError",
    "APIStreamError",
    "APITimeoutError",
    "AsyncChunkStream",
    "AsyncModelPort",
    "AsyncStream",
    "AuthenticationError",
    "BadRequestError",
    "ChunkStream",
    "ConflictError",
    "DEFAULT_BASE_URL",
    "GATEWAY_URL",
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
    "Stream",
    "UnprocessableEntityError",
    "create_headers",
    "createHeaders",
]
