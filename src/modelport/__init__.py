"""ModelPort: a fast, self-hosted AI gateway that speaks the Portkey gateway protocol.

The public Python names are the SDK's (``modelport.client``), errors included::

    from modelport import ModelPort, GATEWAY_URL, create_headers, APIStatusError, RateLimitError
"""

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


def __getattr__(name: str) -> object:
    # The SDK is imported on first use of one of its names, not with the package: every process of
    # `modelport serve` (and each CLI command) imports `modelport` but never the SDK, whose httpx (and
    # the rich and click httpx's command line pulls in) cost ~0.15 s of start-up per process.
    if name in __all__:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
