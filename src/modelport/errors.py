"""Errors the gateway itself raises (never the provider's). Each maps to one status and one JSON shape.

    GatewayError                      500 internal_error
    ├── BadRequest                    400 invalid_request_error
    │   ├── InvalidHeader             400   a malformed x-portkey-* value
    │   ├── UnknownProvider           400   no such provider id or @slug
    │   ├── InvalidConfig             400   the routing config fails validation
    │   ├── UnsupportedEndpoint       400   a unified endpoint the provider does not serve
    │   ├── ForbiddenHost             400   a custom host that breaks the SSRF rules
    │   └── PreviousResponseNotFound  400   previous_response_id the gateway does not hold for this key (OpenAI's shape)
    ├── Unauthorized                  401 authentication_error
    ├── Forbidden                     403 permission_error
    ├── NotFound                      404 not_found_error
    ├── MethodNotAllowed              405 invalid_request_error
    ├── RequestTimeout                408 request_timeout (a head not sent in time, server/protocol.py)
    ├── Conflict                      409 conflict_error   (a taken slug, a record still in use)
    ├── PayloadTooLarge               413 payload_too_large
    ├── HeadersTooLarge               431 headers_too_large (the request line and headers, server/protocol.py)
    ├── RateLimited                   429 rate_limit_error
    ├── UpstreamUnreachable           502 upstream_error
    ├── BadUpstreamResponse           502 upstream_error   (a response a provider policy must read, unreadable)
    ├── UpstreamTimeout               504 timeout_error
    ├── MetricsUnavailable            503 service_unavailable (the log service, which keeps them, is away)
    └── StoreBusy                     503 service_unavailable (the store locked or away: retry)

Every response built from these carries ``x-portkey-gateway-exception: true`` and the body
``{"error": {"message", "type", "code"}}``: the message says what to change.
"""

from __future__ import annotations

import orjson

QUOTED_MAX = 64


def quoted(value: str) -> str:
    """A caller's value as an error message repeats it: quoted, and cut so that a 1 MB header is not
    sent back, nor stored whole in the request's log record."""
    if len(value) <= QUOTED_MAX:
        return repr(value)
    return f"{value[:QUOTED_MAX]!r}… ({len(value):,} characters)"


class GatewayError(Exception):
    status = 500
    type = "internal_error"
    code = "internal_error"
    # Set on an error raised while the request headers were parsed, before any RequestOptions (and so
    # its trace id) existed: the caller's x-portkey-trace-id, or a generated one.
    trace_id = ""

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type, "code": self.code}})


class BadRequest(GatewayError):
    status, type, code = 400, "invalid_request_error", "bad_request"


class InvalidHeader(BadRequest):
    code = "invalid_header"


class UnknownProvider(BadRequest):
    code = "unknown_provider"


class InvalidConfig(BadRequest):
    code = "invalid_config"


class UnsupportedEndpoint(BadRequest):
    code = "unsupported_endpoint"


class ForbiddenHost(BadRequest):
    code = "forbidden_custom_host"


class PreviousResponseNotFound(BadRequest):
    """OpenAI's answer to an unknown, expired or deleted ``previous_response_id``, word for word (a 400 with
    ``param``), so clients that look for its code keep working; another key's response is unknown too."""

    code = "previous_response_not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Previous response with id {quoted(response_id)} not found.")

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type, "param": "previous_response_id",
                                       "code": self.code}})


class Unauthorized(GatewayError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class Forbidden(GatewayError):
    status, type, code = 403, "permission_error", "forbidden"


class NotFound(GatewayError):
    status, type, code = 404, "not_found_error", "not_found"


class MethodNotAllowed(GatewayError):
    status, type, code = 405, "invalid_request_error", "method_not_allowed"


class RequestTimeout(GatewayError):
    status, type, code = 408, "invalid_request_error", "request_timeout"


class Conflict(GatewayError):
    status, type, code = 409, "conflict_error", "conflict"


class PayloadTooLarge(GatewayError):
    status, type, code = 413, "invalid_request_error", "payload_too_large"


class HeadersTooLarge(GatewayError):
    status, type, code = 431, "invalid_request_error", "headers_too_large"


class RateLimited(GatewayError):
    status, type, code = 429, "rate_limit_error", "rate_limited"


class UpstreamUnreachable(GatewayError):
    status, type, code = 502, "upstream_error", "upstream_unreachable"


class BadUpstreamResponse(GatewayError):
    status, type, code = 502, "upstream_error", "bad_upstream_response"


class UpstreamTimeout(GatewayError):
    status, type, code = 504, "timeout_error", "upstream_timeout"


class MetricsUnavailable(GatewayError):
    status, type, code = 503, "service_unavailable", "log_service_unavailable"


class StoreBusy(GatewayError):
    status, type, code = 503, "service_unavailable", "store_unavailable"
