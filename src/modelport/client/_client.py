"""``ModelPort`` and ``AsyncModelPort``: HTTP clients for a ModelPort (or Portkey) gateway.

Both share ``_ClientCore`` — options, headers, URLs, the shape of a request — and differ only in
how they send and wait. Differences from Portkey's SDK, each a defect listed in
research/portkey.md §5 and §9.4: ``MODELPORT_BASE_URL`` is read, per-call headers win over
client-level ones, ``strict_open_ai_compliance`` is sent only when given, retries return the
retried response and never repeat a POST that may have reached the server, and any body (array,
text, event stream with named events) comes back instead of crashing.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Mapping
from functools import cached_property
from importlib import metadata
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import httpx

from ._errors import connection_error, status_error
from ._headers import create_headers
from ._resources import AsyncChat, AsyncEndpoint, AsyncModels, Chat, Endpoint, Models
from ._response import Response
from ._retries import may_retry_error, may_retry_response, retry_delay
from ._streaming import AsyncStream, Stream

DEFAULT_BASE_URL = "http://localhost:8787/v1"
BASE_URL_ENV = "MODELPORT_BASE_URL"
API_KEY_ENV = "MODELPORT_API_KEY"

# Read at import, like Portkey's PORTKEY_GATEWAY_URL, for `OpenAI(base_url=GATEWAY_URL, ...)`.
GATEWAY_URL = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL

# LLM generations and Replicate's `Prefer: wait` run for minutes; failing to connect is quick.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
DEFAULT_MAX_RETRIES = 2


def _package_version() -> str:
    try:
        return metadata.version("modelport")
    except metadata.PackageNotFoundError:
        return "0+unknown"


USER_AGENT = f"modelport-python/{_package_version()}"

Body = Mapping[str, Any] | list[Any] | str | bytes | None
HttpClient = TypeVar("HttpClient", httpx.Client, httpx.AsyncClient)


class _ClientCore(Generic[HttpClient]):
    def __init__(
        self,
        *,
        api_key: str | None = None,
        provider: str | None = None,
        virtual_key: str | None = None,
        config: str | Mapping[str, Any] | None = None,
        trace_id: str | None = None,
        metadata: str | Mapping[str, Any] | None = None,
        custom_host: str | None = None,
        forward_headers: list[str] | str | None = None,
        request_timeout: int | None = None,
        cache_force_refresh: bool | None = None,
        strict_open_ai_compliance: bool | None = None,
        authorization: str | None = None,
        base_url: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        http_client: HttpClient | None = None,
        **headers: Any,
    ) -> None:
        """Keyword arguments mirror Portkey's; each becomes its ``x-portkey-*`` header.

        ``api_key`` defaults to ``MODELPORT_API_KEY``; ``base_url`` to ``MODELPORT_BASE_URL``, then
        ``http://localhost:8787/v1``. ``authorization`` is the provider key, sent as
        ``Authorization: Bearer ...``. Any other keyword (``anthropic_version="..."``,
        ``openai_project="..."``) becomes a header by ``create_headers``' rules. ``http_client``
        is an ``httpx.Client`` (``httpx.AsyncClient`` for ``AsyncModelPort``) to send through; a
        client given here is not closed by ``close()``.
        """
        self.api_key = api_key or os.environ.get(API_KEY_ENV)
        self.base_url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        header_options: dict[str, Any] = dict(
            headers,
            api_key=self.api_key, provider=provider, virtual_key=virtual_key, config=config,
            trace_id=trace_id, metadata=metadata, custom_host=custom_host,
            forward_headers=forward_headers, request_timeout=request_timeout,
            cache_force_refresh=cache_force_refresh,
            strict_open_ai_compliance=strict_open_ai_compliance, authorization=authorization,
        )  # fmt: skip
        self._options = dict(
            header_options, base_url=self.base_url, timeout=timeout, max_retries=max_retries,
            default_headers=default_headers,
        )  # fmt: skip
        # Sent only when true: Portkey's gateway refreshes on the header's mere presence (§1.1).
        # strict_open_ai_compliance=None is dropped; Portkey's SDK always sends "false" (§5.1).
        wire = create_headers(**{**header_options, "cache_force_refresh": cache_force_refresh or None})
        self.headers = httpx.Headers({"User-Agent": USER_AGENT, **wire})
        self.headers.update(default_headers or {})
        self._owns_http = http_client is None
        self._http: HttpClient = http_client or self._new_http_client()

    def _new_http_client(self) -> HttpClient:
        raise NotImplementedError

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def _build_request(
        self,
        http: httpx.Client | httpx.AsyncClient,
        method: str,
        path: str,
        *,
        body: Body = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        url = self._url(path)
        # The gateway key and provider key go to the gateway only, not to another host a
        # response happened to point at.
        merged = httpx.Headers(self.headers if _same_origin(url, self.base_url) else {})
        merged.update(headers or {})  # per-call headers win (Portkey's SDK does the reverse)
        raw = body if isinstance(body, (str, bytes)) else None
        json_body = None if raw is not None or body is None else body
        return http.build_request(
            method, url, params=params, headers=merged, json=json_body, content=raw, timeout=self.timeout
        )

    def _retry_in(
        self,
        request: httpx.Request,
        attempt: int,
        *,
        response: httpx.Response | None = None,
        error: Exception | None = None,
    ) -> float | None:
        """Seconds to wait before sending ``request`` again, or ``None`` to stop here."""
        if attempt >= self.max_retries:
            return None
        if response is not None:
            return retry_delay(attempt, response) if may_retry_response(request.method, response) else None
        return retry_delay(attempt) if error is not None and may_retry_error(request.method, error) else None

    def _post_body(self, data: Body, body: dict[str, Any], stream: bool) -> Body:
        if data is not None and body:
            raise TypeError("pass the body either as data= or as keyword arguments, not both")
        if data is None:
            return {**body, "stream": True} if stream else body
        if stream and isinstance(data, Mapping):
            return {**data, "stream": True}
        return data


class ModelPort(_ClientCore[httpx.Client]):
    """Synchronous client. ``ModelPort(api_key=..., provider="@replicate-prod")``."""

    def _new_http_client(self) -> httpx.Client:
        return httpx.Client(timeout=self.timeout)

    @cached_property
    def chat(self) -> Chat:
        return Chat(self)

    @cached_property
    def completions(self) -> Endpoint:
        return Endpoint(self, "/completions")

    @cached_property
    def embeddings(self) -> Endpoint:
        return Endpoint(self, "/embeddings")

    @cached_property
    def messages(self) -> Endpoint:
        """Anthropic's native Messages API."""
        return Endpoint(self, "/messages")

    @cached_property
    def responses(self) -> Endpoint:
        """OpenAI's Responses API (create; streams are its typed events)."""
        return Endpoint(self, "/responses")

    @cached_property
    def models(self) -> Models:
        return Models(self)

    def post(
        self,
        url: str,
        /,
        *,
        data: Body = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        **body: Any,
    ) -> Response | Stream:
        """POST a JSON body: ``data`` if given, else the keyword arguments.

        ``stream=True`` adds ``"stream": true`` to the body. The answer is a ``Stream`` whenever
        the server sends ``text/event-stream``, else a ``Response``.
        """
        return self.request("POST", url, body=self._post_body(data, body, stream), headers=headers)

    def get(
        self, path: str, *, params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
    ) -> Response | Stream:
        return self.request("GET", path, params=params, headers=headers)

    def put(self, path: str, body: Body = None, *, headers: Mapping[str, str] | None = None) -> Response | Stream:
        return self.request("PUT", path, body=body, headers=headers)

    def delete(
        self, path: str, *, params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
    ) -> Response | Stream:
        return self.request("DELETE", path, params=params, headers=headers)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Body = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response | Stream:
        """Any method (PATCH, Replicate's QUERY...); a path relative to ``base_url`` or a full URL."""
        request = self._build_request(self._http, method.upper(), path, body=body, params=params, headers=headers)
        return self._deliver(self._send(request))

    def _send(self, request: httpx.Request) -> httpx.Response:
        for attempt in itertools.count():
            try:
                http_response = self._http.send(request, stream=True)
            except httpx.TransportError as error:
                delay = self._retry_in(request, attempt, error=error)
                if delay is None:
                    raise connection_error(error, request) from error
            else:
                delay = self._retry_in(request, attempt, response=http_response)
                if delay is None:
                    return http_response
                http_response.close()
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _deliver(self, http_response: httpx.Response) -> Response | Stream:
        if http_response.status_code < 400 and _is_event_stream(http_response):
            return Stream(http_response)
        try:
            http_response.read()
        except httpx.TransportError as error:
            raise connection_error(error, http_response.request) from error
        finally:
            http_response.close()
        response = Response(http_response)
        if response.status_code >= 400:
            raise status_error(response)
        return response

    def with_options(self, **changes: Any) -> ModelPort:
        """A copy with some options changed, sharing this client's connection pool."""
        return ModelPort(**{**self._options, "http_client": self._http, **changes})

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> ModelPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncModelPort(_ClientCore[httpx.AsyncClient]):
    """Asynchronous client; the same methods as ``ModelPort``, awaited."""

    def _new_http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout)

    @cached_property
    def chat(self) -> AsyncChat:
        return AsyncChat(self)

    @cached_property
    def completions(self) -> AsyncEndpoint:
        return AsyncEndpoint(self, "/completions")

    @cached_property
    def embeddings(self) -> AsyncEndpoint:
        return AsyncEndpoint(self, "/embeddings")

    @cached_property
    def messages(self) -> AsyncEndpoint:
        """Anthropic's native Messages API."""
        return AsyncEndpoint(self, "/messages")

    @cached_property
    def responses(self) -> AsyncEndpoint:
        """OpenAI's Responses API (create; streams are its typed events)."""
        return AsyncEndpoint(self, "/responses")

    @cached_property
    def models(self) -> AsyncModels:
        return AsyncModels(self)

    async def post(
        self,
        url: str,
        /,
        *,
        data: Body = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        **body: Any,
    ) -> Response | AsyncStream:
        """See ``ModelPort.post``."""
        return await self.request("POST", url, body=self._post_body(data, body, stream), headers=headers)

    async def get(
        self, path: str, *, params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
    ) -> Response | AsyncStream:
        return await self.request("GET", path, params=params, headers=headers)

    async def put(
        self, path: str, body: Body = None, *, headers: Mapping[str, str] | None = None
    ) -> Response | AsyncStream:
        return await self.request("PUT", path, body=body, headers=headers)

    async def delete(
        self, path: str, *, params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
    ) -> Response | AsyncStream:
        return await self.request("DELETE", path, params=params, headers=headers)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Body = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response | AsyncStream:
        request = self._build_request(self._http, method.upper(), path, body=body, params=params, headers=headers)
        return await self._deliver(await self._send(request))

    async def _send(self, request: httpx.Request) -> httpx.Response:
        for attempt in itertools.count():
            try:
                http_response = await self._http.send(request, stream=True)
            except httpx.TransportError as error:
                delay = self._retry_in(request, attempt, error=error)
                if delay is None:
                    raise connection_error(error, request) from error
            else:
                delay = self._retry_in(request, attempt, response=http_response)
                if delay is None:
                    return http_response
                await http_response.aclose()
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _deliver(self, http_response: httpx.Response) -> Response | AsyncStream:
        if http_response.status_code < 400 and _is_event_stream(http_response):
            return AsyncStream(http_response)
        try:
            await http_response.aread()
        except httpx.TransportError as error:
            raise connection_error(error, http_response.request) from error
        finally:
            await http_response.aclose()
        response = Response(http_response)
        if response.status_code >= 400:
            raise status_error(response)
        return response

    def with_options(self, **changes: Any) -> AsyncModelPort:
        """A copy with some options changed, sharing this client's connection pool."""
        return AsyncModelPort(**{**self._options, "http_client": self._http, **changes})

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncModelPort:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _is_event_stream(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


def _same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())
