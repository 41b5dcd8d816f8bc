"""Every error the ModelPort SDK raises.

    ModelPortError
    └── APIError                      message, request
        ├── APIConnectionError        no HTTP response (refused, reset, dropped)
        │   └── APITimeoutError       the client's timeout ran out
        ├── APIStreamError            an error event inside a 200 event stream
        └── APIStatusError            HTTP status >= 400: status_code, body, response,
            │                         gateway_exception, trace_id
            ├── BadRequestError           400
            ├── AuthenticationError       401
            ├── PermissionDeniedError     403
            ├── NotFoundError             404
            ├── ConflictError             409
            ├── PayloadTooLargeError      413
            ├── UnprocessableEntityError  422
            ├── RateLimitError            429
            └── InternalServerError       5xx
                └── GatewayTimeoutError   504

Other statuses (408 request timeout, 412, 446 guardrail denial, ...) raise ``APIStatusError``
itself; its ``status_code`` tells them apart.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from ._response import Response


class ModelPortError(Exception):
    """Base of everything the SDK raises."""


class APIError(ModelPortError):
    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APIConnectionError(APIError):
    """The request got no HTTP response."""


class APITimeoutError(APIConnectionError):
    """The client gave up waiting (connect, write, read or pool timeout)."""


class APIStreamError(APIError):
    """An event stream reported an error after its 200 status was already sent."""

    def __init__(self, message: str, *, body: Any = None) -> None:
        super().__init__(message)
        self.body = body


class APIStatusError(APIError):
    """The server answered with a status of 400 or more."""

    def __init__(self, message: str, *, response: Response) -> None:
        super().__init__(message, request=response.http_response.request)
        self.response = response
        self.status_code = response.status_code
        self.body = _body_of(response)
        # Set by the gateway on errors it raised itself, before or instead of the upstream call
        # (research/portkey.md §1.2); an upstream error passed through does not carry it.
        self.gateway_exception = response.headers.get("x-portkey-gateway-exception") == "true"
        self.trace_id = response.trace_id

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}"


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class ConflictError(APIStatusError):
    pass


class PayloadTooLargeError(APIStatusError):
    pass


class UnprocessableEntityError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


class GatewayTimeoutError(InternalServerError):
    pass


_ERROR_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    504: GatewayTimeoutError,
}


def status_error(response: Response) -> APIStatusError:
    """The typed error for an HTTP error response (its body already read)."""
    status = response.status_code
    error_type = _ERROR_BY_STATUS.get(status)
    if error_type is None:
        error_type = InternalServerError if status >= 500 else APIStatusError
    return error_type(error_message(_body_of(response), response), response=response)


def error_message(body: Any, response: Response | None = None) -> str:
    """The human message of an error body, in the shapes ModelPort meets.

    OpenAI and the gateway: ``{"error": {"message": ...}}``; some providers ``{"error": "..."}``;
    Replicate: problem+json ``{"title", "detail"}``; anything else: the text itself.
    """
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        for field in ("detail", "message", "title"):
            if body.get(field):
                return str(body[field])
    if isinstance(body, str) and body.strip():
        return body.strip()[:2000]
    if response is not None:
        return response.http_response.reason_phrase or f"HTTP {response.status_code}"
    return json.dumps(body)


def _body_of(response: Response) -> Any:
    """The parsed JSON body, or the text when the body is not JSON (plain-text 500s exist)."""
    try:
        return response.json()
    except ValueError:
        return response.text


def connection_error(error: Exception, request: httpx.Request | None) -> APIConnectionError:
    """The SDK error for a transport failure (no HTTP response at all)."""
    error_type = APITimeoutError if isinstance(error, httpx.TimeoutException) else APIConnectionError
    detail = str(error) or type(error).__name__
    return error_type(f"{type(error).__name__}: {detail}", request=request)
