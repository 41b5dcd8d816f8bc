"""The gateway's side of a multi-step unified call (providers/base.py ``Steps``): one attempt's transport.

A multi-step adapter (Replicate's chat and images) sends several requests for one call: it reads the
model's schema, creates a prediction, then polls or streams it. None of them is a second request path:
each goes out through ``open_upstream`` (transport/send.py) on the attempt's pooled session, with the
provider's auth, past the provider's policy for requests to its API (the create is authorized and
screened exactly as a proxied create: its owner recorded, its input's file URLs checked), and within
the attempt's deadline.

Where a URL is decides what it gets. The provider's API root (``target.base_url``): the credential
and the policy. Another host the provider names for its API (Replicate's stream host): no credential
(the stream URL is a capability, as gateway/stream_relay.py treats it), the attempt's session. A URL a
model's *output* names (an image to fetch for ``b64_json``): no credential and the SSRF-guarded session,
since a prompt can steer what a model outputs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
from yarl import URL

from ..body_json import BodyJson
from ..errors import BadUpstreamResponse, ForbiddenHost, UpstreamTimeout
from ..hosts import check_custom_host
from ..log_record import LogRecord
from ..providers.base import Answer, Exchange, ExchangePolicy, Forward, StepAnswer, StepRefused, Transport, UpstreamRequest
from ..transport.send import open_upstream, read_at_most, whole_answer
from ..transport.sessions import Upstreams
from .forward import send_to_provider
from .resolve import Resolved

STEP_ERROR_LIMIT = 64 * 1024  # what is read of a refused stream's body, for its error message
# Of a prediction, what the log service needs to price it (providers/replicate/pricing.py): not its input (the
# prompt) nor its output (the text), which the log's body settings govern, only how many outputs.
_PRICED_FIELDS = ("id", "status", "model", "version", "deployment", "metrics")


class AttemptSteps:
    """``Steps`` for one attempt of one unified call."""

    def __init__(self, upstreams: Upstreams, transport: Transport, resolved: Resolved,
                 headers_for: Callable[[dict[str, str]], dict[str, str]], policy: ExchangePolicy | None,
                 key_id: str | None, admin: bool, record: LogRecord, timeout: float, allow_private: bool) -> None:  # fmt: skip
        self.upstreams, self.transport, self.resolved, self.policy = upstreams, transport, resolved, policy
        self._headers_for = headers_for  # the adapter's headers + defaults and forwarded caller headers (not auth)
        self.key_id, self.admin, self.record = key_id, admin, record
        self.timeout = timeout
        self.allow_private = allow_private  # MODELPORT_ALLOW_PRIVATE_HOSTS: output URLs may be private too
        self._deadline = time.monotonic() + timeout
        base = URL(resolved.target.base_url)
        self._api_origin, self._api_root = base.origin(), resolved.target.base_url.rstrip("/")

    def remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def extend(self, seconds: float) -> None:
        """Let steps run ``seconds`` more whatever the deadline: to stop what the call started once its
        client left (gateway/unified.py), which must not fail because the client left at the deadline."""
        self._deadline = max(self._deadline, time.monotonic() + seconds)

    async def fetch(self, request: UpstreamRequest, limit: int, *, output_url: bool = False) -> StepAnswer:
        """``output_url``: the URL is one a model's output named (see the module docstring)."""
        exchange = self._exchange(request) if not output_url else None
        body = request.body
        if exchange is not None and self.policy is not None:
            answer = await self.policy.authorize(exchange)
            if isinstance(answer, Answer):  # the policy answers for the provider (another tenant's object)
                return StepAnswer(answer.status, {"content-type": answer.content_type}, answer.body)
            if isinstance(answer, Forward):
                body = answer.body
        remaining = self._left(request)
        try:
            if output_url:
                check_custom_host(request.url, self.allow_private)  # IP literals: aiohttp never resolves them
            async with asyncio.timeout(remaining):
                response = await self._open(request, body, output_url, remaining)
                try:
                    raw = await read_at_most(response, limit)
                finally:
                    response.release()
        except TimeoutError:
            raise self._timed_out(request) from None
        except ForbiddenHost as refused:  # only an output URL goes through the SSRF rules here
            raise BadUpstreamResponse(f"the model's output names a URL the gateway will not fetch: {refused.message}",
                                      code="output_url_refused") from None
        answer = whole_answer(response, raw, limit, f"{self.resolved.spec.id} answered {self._where(request)}")
        if exchange is not None and self.policy is not None and self.policy.wants_screen(exchange):
            screened = await self.policy.screen(exchange, answer.status, answer.body)
            return StepAnswer(answer.status, answer.headers, screened)
        return answer

    async def stream(self, request: UpstreamRequest) -> AsyncIterator[bytes]:
        response = await self._open(request, request.body, False, self._left(request))
        try:
            if response.status != 200:
                raw = await read_at_most(response, STEP_ERROR_LIMIT)
                raise StepRefused(StepAnswer(response.status, dict(response.headers), raw[:STEP_ERROR_LIMIT]))
            async for chunk in response.content.iter_any():
                yield chunk
        finally:
            response.close()  # a stream left early (the client went away) must not keep its connection

    def saw(self, prediction: Mapping[str, Any]) -> None:
        found = {name: prediction[name] for name in _PRICED_FIELDS if name in prediction}
        output = prediction.get("output")
        # Pricing counts outputs (images) and reads no text: keep the count, not the content.
        found["output"] = [""] * len(output) if isinstance(output, list) else bool(output) if output else None
        inputs = prediction.get("input")
        duration = inputs.get("duration") if isinstance(inputs, Mapping) else None
        if isinstance(duration, (int, float)):  # the one input pricing reads (video length)
            found["input"] = {"duration": duration}
        record = self.record
        seen = [p for p in record.predictions or () if p.get("id") != found.get("id")]
        record.predictions = [*seen, found]
        record.prediction_id = record.prediction_id or found.get("id")

    def seen(self) -> list[Mapping[str, Any]]:
        return list(self.record.predictions or ())

    # -- internals ---------------------------------------------------------------------------------

    async def _open(self, request: UpstreamRequest, body: Any, output_url: bool, timeout: float) -> aiohttp.ClientResponse:
        url = URL(request.url, encoded=False)
        if url.origin() == self._api_origin and not output_url:  # the provider's API: its headers and its auth
            return await send_to_provider(self.upstreams, self.transport, self.resolved, request.method, url,
                                          self._headers_for(request.headers), body, timeout)
        guarded = output_url or self.resolved.caller_chosen_host
        return await open_upstream(self.upstreams, guarded, self.resolved.spec.id, request.method, url, request.headers,
                                   body, timeout)

    def _exchange(self, request: UpstreamRequest) -> Exchange | None:
        """The request as the provider's policy sees a proxied one, when it goes to the provider's API."""
        if self.policy is None or not request.url.startswith(self._api_root + "/"):
            return None
        path, _, query = request.url[len(self._api_root):].partition("?")
        return Exchange(request.method, path, query, request.body, self.resolved.target, self.key_id, self.admin,
                        BodyJson(request.body))

    def _left(self, request: UpstreamRequest) -> float:
        remaining = self.remaining()
        if remaining <= 0:
            raise self._timed_out(request)
        return remaining

    def _timed_out(self, request: UpstreamRequest) -> UpstreamTimeout:
        return UpstreamTimeout(f"{self.resolved.spec.id} did not finish {request.method} {self._where(request)} within "
                               f"the request's {self.timeout:g} s (x-portkey-request-timeout / request_timeout, else "
                               "MODELPORT_UPSTREAM_TIMEOUT)")

    def _where(self, request: UpstreamRequest) -> str:
        """A step's URL for a message: its path on the provider's API, else only its host (a stream or
        output URL's path is a capability, not for logs)."""
        if request.url.startswith(self._api_root + "/"):
            return request.url[len(self._api_root):].partition("?")[0]
        return f"a URL on {URL(request.url).host}"
