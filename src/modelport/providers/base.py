"""What a provider is: a spec (data) and, only where its wire format differs from OpenAI's, an adapter.

The pipeline never branches on a provider id. It reads the spec to build the upstream URL, hands each
request to the spec's ``ProviderAuth`` just before it is sent, and calls the adapter (if any) to translate unified requests and responses.

Endpoint names used for the unified API (``Endpoint``):
    "chat"        POST /v1/chat/completions
    "completions" POST /v1/completions
    "embeddings"  POST /v1/embeddings
    "models"      GET  /v1/models
    "messages"    POST /v1/messages          (Anthropic-native clients; served by every provider with
                                             "chat", through ``messages_over_chat``, unless it has its own)
    "responses"   POST /v1/responses         (OpenAI's Responses API; likewise through ``responses_over_chat``
                                             unless the provider has its own: OpenAI, Azure OpenAI)
    "images"      POST /v1/images/generations
    "transcriptions" POST /v1/audio/transcriptions  (multipart/form-data, passed on as sent)
    "translations"   POST /v1/audio/translations    (likewise)
    "speech"      POST /v1/audio/speech          (JSON in, audio bytes out)
    "rerank"      POST /v1/rerank                (Cohere's shape: Portkey's unified rerank)

Most adapters translate one request and its response. A ``MultiStepAdapter`` runs a unified call as
several upstream requests (Replicate: read the model's input schema, create a prediction, then stream
or poll it); each of them goes through ``Steps``, the gateway's one upstream transport, so a step is
authorized, sent, timed and bounded exactly as any request is.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Literal, Mapping, NamedTuple, Protocol
from urllib.parse import unquote

from ..body_json import BodyJson
# The upstream request and response values are the transport's (transport/messages.py); adapters and
# auth hooks name them from here, with the rest of the provider contract.
from ..transport.messages import StepAnswer, Transport, UpstreamRequest

if TYPE_CHECKING:
    from ..log_record import LogRecord

Endpoint = Literal["chat", "completions", "embeddings", "models", "messages", "responses", "images",
                   "transcriptions", "translations", "speech", "rerank"]
# Endpoints whose request is a multipart upload: never parsed as JSON, never re-encoded (gateway/unified.py).
MULTIPART_ENDPOINTS = frozenset({"transcriptions", "translations"})


@dataclass(frozen=True, slots=True)
class Setting:
    """One provider-specific value, declared by the provider (data), read by header parsing, configs,
    resolution, the control plane and the CLI — nothing lists provider settings by hand.

    ``upstream_header``: the header the gateway sends the value as on every request to the provider's
    API (``openai-organization``), with ``default`` when the value is unset: the provider's one source
    of that default header. A client's own header of that name wins on the proxy route; on the unified
    API an adapter's and then the caller's forwarded headers do.
    """

    name: str                       # key in Target.settings and in a stored provider's settings ("aws_region")
    header: str | None = None       # x-portkey-<header> a caller may send ("aws-region" → x-portkey-aws-region)
    config_keys: tuple[str, ...] = ()  # spellings in a config target / Portkey body ("awsRegion", "aws_region")
    secret: bool = False            # sealed by the vault like the API key; never logged, shown or returned
    required: bool = False          # a request/stored provider without it is refused with a clear 400
    overridable: bool = False       # a caller may override it per request on a stored provider
    doc: str = ""
    upstream_header: str | None = None
    default: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """One upstream a request may be sent to: everything an adapter needs, already resolved.

    ``base_url`` is the provider's API root without a trailing slash (for Replicate
    ``https://api.replicate.com/v1``), already replaced by a custom host where one applies.
    ``settings`` holds provider-specific values (Azure ``resource_name``, ``deployment_id``,
    ``api_version``; Anthropic ``anthropic_version``; ...).
    """

    provider: str
    base_url: str
    api_key: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    slug: str | None = None


class UnsupportedParameter(ValueError):
    """A request parameter the provider cannot honour, raised only under strict compliance."""

    def __init__(self, parameter: str, provider: str) -> None:
        super().__init__(f"Parameter '{parameter}' is not supported by provider '{provider}'.")
        self.parameter = parameter
        self.provider = provider


class StreamTranslator(Protocol):
    """Turns an upstream event stream into OpenAI-shaped SSE bytes, chunk by chunk.

    ``feed`` takes raw upstream bytes (any split, events may straddle chunks) and returns the bytes
    to send on (possibly ``b""``); ``finish`` flushes and returns the tail, ending with
    ``data: [DONE]\\n\\n`` for OpenAI-shaped endpoints. ``usage`` is the OpenAI-shaped usage dict
    seen so far (or None).
    """

    usage: dict[str, Any] | None

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class Adapter(Protocol):
    """Translation between the unified (OpenAI) format and one provider's native format.

    An adapter may also name endpoints whose bodies the provider takes as OpenAI's, at a URL of its own
    (``sent_as_is``: endpoint → nothing translated, the request and the answer relayed as they are, a
    multipart upload or a binary answer included); ``url_as_sent(endpoint, target, model)`` gives that
    URL, raising ``ValueError`` with a user-facing message when it cannot be built."""

    def build_request(
        self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool
    ) -> UpstreamRequest:
        """Translate a unified request. Raise ``UnsupportedParameter`` (strict) or drop (lenient)
        parameters the provider cannot take. Raise ``ValueError`` with a user-facing message for
        a request that cannot be translated at all."""
        ...

    def parse_response(
        self, endpoint: Endpoint, status: int, body: bytes, request_body: dict[str, Any]
    ) -> bytes:
        """Translate a successful (2xx) upstream body into the unified JSON body."""
        ...

    def stream_translator(self, endpoint: Endpoint, request_body: dict[str, Any]) -> StreamTranslator:
        ...

    def error_body(self, status: int, body: bytes) -> dict[str, Any]:
        """Normalise an upstream error body to ``{"error": {"message", "type", "code", ...}}`` (for the
        ``messages`` endpoint, Anthropic's ``{"type": "error", "error": {"type", "message"}}``)."""
        ...


class ProviderAuth(Protocol):
    """How a credential reaches the provider: sees the whole upstream request just before it is sent,
    with its final method, URL, headers and body bytes, and may change its headers (sign it).

    Called once per request to the provider's API (proxied, translated, each step of a multi-step
    call), after every other header is final. It may raise a ``GatewayError`` to refuse the request
    (a signer that cannot sign a streamed body, a token exchange that failed)."""

    async def authorize(self, request: UpstreamRequest, target: Target, transport: Transport) -> None: ...


@dataclass(frozen=True, slots=True)
class AuthScheme:
    """The static ``ProviderAuth``: the API key presented as it is.

    kind "bearer": ``Authorization: Bearer <key>``; kind "header": ``<header>: <key>``;
    kind "none": no credential (e.g. a local Ollama). Without a key the request goes as it is.
    """

    kind: Literal["bearer", "header", "none"] = "bearer"
    header: str = "authorization"

    def headers_for(self, secret: str | None) -> dict[str, str]:
        if self.kind == "none" or not secret:
            return {}
        if self.kind == "bearer":
            return {"authorization": f"Bearer {secret}"}
        return {self.header: secret}

    async def authorize(self, request: UpstreamRequest, target: Target, transport: Transport) -> None:
        key = target.api_key  # as headers_for, without its dict: this runs on every request
        if key and self.kind != "none":
            request.headers[self.header if self.kind == "header" else "authorization"] = \
                key if self.kind == "header" else f"Bearer {key}"


BEARER = AuthScheme("bearer")


class ProviderFailure(Exception):
    """The provider took the call and failed it (a failed prediction): answered with ``status`` and
    ``body`` (already in the unified error shape), and not marked as the gateway's failure."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body


class StepRefused(Exception):
    """A stream the provider would not open (``Steps.stream``): its status and (bounded) body."""

    def __init__(self, answer: StepAnswer) -> None:
        super().__init__(f"HTTP {answer.status}")
        self.answer = answer


class Steps(Protocol):
    """What the gateway lends a ``MultiStepAdapter`` for one attempt: its upstream transport.

    Every request goes to the provider on the attempt's pooled session (the SSRF-guarded one for a
    caller-chosen host) with the provider's auth added, past the provider's policy when it has one
    (a create is authorized and screened as on the proxy route), and within the attempt's deadline.
    Transport failures raise the gateway's own errors (errors.py).
    """

    def remaining(self) -> float:
        """Seconds left of the attempt's deadline (the request timeout, else the upstream timeout)."""
        ...

    async def fetch(self, request: UpstreamRequest, limit: int, *, output_url: bool = False) -> StepAnswer:
        """Send a request and read its whole response, up to ``limit`` bytes (a 502 past it).
        ``output_url``: a URL that a model's output named (an image), fetched without the credential
        through the SSRF-guarded session, since a prompt can steer what a model outputs."""
        ...

    def stream(self, request: UpstreamRequest) -> AsyncIterator[bytes]:
        """Send a request and yield its body as it arrives; a status other than 200 raises
        ``StepRefused``."""
        ...

    def saw(self, prediction: Mapping[str, Any]) -> None:
        """Note an object the call created, as last seen (a Replicate prediction), for the log record:
        the log service prices it once, like a proxied prediction, and the prediction view links it."""
        ...

    def seen(self) -> list[Mapping[str, Any]]:
        """What ``saw`` was given, the last sighting of each object (as cut for the log record)."""
        ...


@dataclass(slots=True)
class Reply:
    """A multi-step call's answer: a JSON ``body``, or an SSE ``stream`` relayed as it is produced.
    ``usage`` (OpenAI-shaped) and ``error`` (what failed after a stream's 200, said in the stream) are
    read, for the log record, once the body is built or the stream has ended. ``events`` is what turns
    a translated stream (Responses: its ``final`` response, which the gateway stores before the last
    event is relayed)."""

    status: int
    body: bytes | None = None
    stream: AsyncIterator[bytes] | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None
    events: Any = None


class MultiStepAdapter(Adapter, Protocol):
    """An adapter whose unified call is several upstream requests, all through ``Steps``.

    ``begin`` sends the requests up to the first one whose status routing judges (retries, fallback):
    Replicate's schema read and create. ``finish`` gets that answer when it is 2xx and continues (stream
    or poll); a non-2xx first answer is translated by ``error_body`` as for any adapter. ``abandon`` runs
    when the client leaves while ``finish`` or its stream is still going.
    """

    multi_step: bool  # True

    async def begin(self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool,
                    steps: Steps) -> StepAnswer: ...

    async def finish(self, endpoint: Endpoint, first: StepAnswer, body: dict[str, Any], target: Target,
                     steps: Steps) -> Reply: ...

    async def abandon(self, first: StepAnswer, target: Target, steps: Steps) -> None:
        """The client went away before the call ended: stop what the call started (Replicate: cancel
        its predictions, which would otherwise run, and bill, to their end)."""
        ...


class OverStepChat:
    """``begin`` and ``abandon`` of another API (Messages, Responses) served over a provider's multi-step
    chat adapter (``self.chat``): the request translated to chat by ``_chat_request``, a refused parameter
    named as the caller's API spells it (``names``), whichever translation refused it."""

    multi_step = True
    names: Mapping[str, str] = {}
    chat: Any
    provider: str

    def _chat_request(self, body: dict[str, Any], strict: bool) -> dict[str, Any]:
        raise NotImplementedError

    async def begin(self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool,
                    steps: Steps) -> StepAnswer:
        try:
            return await self.chat.begin("chat", self._chat_request(body, strict), target, strict, steps)
        except UnsupportedParameter as exc:
            raise UnsupportedParameter(self.names.get(exc.parameter, exc.parameter), exc.provider) from None

    async def abandon(self, first: StepAnswer, target: Target, steps: Steps) -> None:
        await self.chat.abandon(first, target, steps)


def _as_named(model: str) -> tuple[str, ...]:
    return (model,)


@dataclass(frozen=True, slots=True)
class ModelRule:
    """Where a request on the proxy route names the model it runs, so a stored provider's
    ``allowed_models`` holds there too.

    A request matches when its method is ``method`` (any when None) and its path after the base URL
    fully matches ``path``. The model is then ``template`` filled from the path's named groups, or else
    the JSON body's ``body_field``. ``required``: such a request always runs a model, so one whose model
    cannot be read (no such field, a body too large to hold) is refused under an allow-list instead of
    passed. ``names`` turns the model reference into the names an allow-list entry may use (Replicate's
    ``owner/name:version``: the reference, the model, the version).
    """

    path: str
    method: str | None = "POST"
    template: str | None = None
    body_field: str | None = None
    required: bool = False
    names: Callable[[str], tuple[str, ...]] = _as_named

    def match(self, method: str, path: str) -> re.Match[str] | None:
        """The path's match when this rule covers the request (its method and path), else None."""
        if self.method is not None and method != self.method:
            return None
        return _compiled(self.path).fullmatch(path.rstrip("/") or "/")

    def model(self, found: re.Match[str], body: Callable[[], Mapping[str, Any] | None]) -> str | None:
        """The model a covered request names; None when it names none the gateway can read."""
        if self.template is not None:
            return self.template.format(**{name: unquote(value) for name, value in found.groupdict().items()})
        fields = body()
        value = fields.get(self.body_field) if fields is not None and self.body_field else None
        return value if isinstance(value, str) else None


@functools.cache  # the patterns of the provider table: a few dozen at most
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# Most providers name the model in the JSON body, on every route (OpenAI's /responses, /images, ...).
MODEL_IN_BODY = (ModelRule(r"/.*", method=None, body_field="model"),)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One proxied request as a provider's policy sees it: who asks, on which account, for what.

    ``path`` is after ``/v1``, normalised (gateway/paths.py) but still percent-encoded; ``body`` is None when it streamed through
    unread (over the gateway's buffer limit); ``body_json`` is its JSON, decoded at most once for the gateway
    and the policy together (modelport/body_json.py), so a policy reads it there, never from ``body``.
    ``key_id`` is the gateway key (None without one). ``public_base`` is the gateway's public ``/v1`` root as this caller reached it (providers/rewrite.py),
    for a policy that hands the provider a gateway URL; empty for providers whose URLs are not rewritten.
    """

    method: str
    path: str
    query: str
    body: bytes | None
    target: Target
    key_id: str | None
    admin: bool
    body_json: BodyJson
    public_base: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """A response a policy gives in the provider's own shape, instead of asking the provider."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Forward:
    """Forward the request with this body instead of the caller's (a policy's rewrite of it)."""

    body: bytes


class ExchangePolicy(Protocol):
    """Provider rules around a proxied request: authorize before forwarding, screen after.

    ``authorize`` returns None to forward the request, a ``Forward`` to forward it with another body,
    an ``Answer`` to answer for the provider (its own "not found", say), or raises a ``GatewayError``
    to refuse it as the gateway. ``screen`` gets
    the status and decoded body of the response before it is relayed (any status, any content type)
    and returns the body to send: it may record what it saw, or leave out what the caller may not see.
    It runs only for requests for which ``wants_screen`` is true; such responses are read whole, and one
    that cannot be read is withheld (502), never relayed unscreened. Unified requests do not reach it.
    """

    async def authorize(self, exchange: Exchange) -> Answer | Forward | None: ...

    def wants_screen(self, exchange: Exchange) -> bool: ...

    async def screen(self, exchange: Exchange, status: int, body: bytes) -> bytes: ...


# Where providers post webhook events: ``/v1/provider-webhooks/<provider id>/<stored provider slug>``,
# served by gateway/provider_webhooks.py and handed to the policy's ``receive_webhook``.
WEBHOOK_ROUTE = "/v1/provider-webhooks/"


@dataclass(frozen=True, slots=True)
class Inbound:
    """One event as a provider posted it, and the gateway's means to act on it."""

    target: Target  # the stored provider the route names
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    api: "ProviderApi"  # the stored provider's API, with its auth
    transport: Callable[[bool], Transport]  # to another host: the SSRF-guarded side when given True
    rewrite: Callable[[bytes, str | None, str], bytes]  # (body, key id, trace id): API URLs onto the gateway
    submit: Callable[["LogRecord"], None]  # a log record, as the request path submits one


@dataclass(slots=True)
class JobsSeen:
    """What one log record shows of a provider's jobs (``ProviderJobs.seen``): ``sightings`` go back to
    ``settle`` in the write transaction (opaque to the log writer); ``cost`` is the record's own,
    provisional until a job it saw ends; ``model`` the job's, for a record that names none; ``job_id``
    the one job it is about (the record's ``prediction_id``), None when it saw several or none."""

    sightings: list[Any]
    cost: Any  # a usage.Cost
    model: str | None = None
    job_id: str | None = None


class Spend(NamedTuple):
    """What one ended job cost, and whose budgets (gateway key, stored provider) it counts against."""

    key_id: str | None
    slug: str | None
    cost_usd: float | None
    tokens: int


@dataclass(frozen=True, slots=True)
class ProviderApi:
    """How a call off the request path reaches a provider's API for one stored provider (the log
    service's autopoll and lookups, the webhook relay's secret read): each request starts from
    the provider's default headers and gets its credential from the provider's ``ProviderAuth`` (a key,
    a signature, a refreshed token), as the pipeline's requests do (gateway/forward.py
    ``send_to_provider``). ``transport`` reaches the provider's host (the SSRF-guarded side when an
    admin, not the operator, chose it); ``auth_transport`` carries the hook's own calls (guarded)."""

    spec: "ProviderSpec"
    target: Target
    transport: Transport
    auth_transport: Transport

    @property
    def base_url(self) -> str:
        return self.target.base_url

    async def fetch(self, method: str, path: str, limit: int) -> StepAnswer:
        """``path`` after the API root; the whole answer up to ``limit`` bytes, or the gateway's error."""
        headers = dict(self.spec.headers_for(self.target.settings))
        request = UpstreamRequest(method, self.target.base_url + path, headers, None)
        await self.spec.auth.authorize(request, self.target, self.auth_transport)
        return await self.transport.fetch(request, limit)


class ProviderJobs(Protocol):
    """A provider's asynchronous jobs (Replicate's predictions) as the log writer meets them, so the
    generic log layer (logs/) holds no provider knowledge. ``ProviderSpec.jobs`` names the module whose
    ``make_jobs(settings)`` returns it, and whose ``step_of(method, path)`` names a record's
    step in a job's lifecycle (the prediction view); the registry finds both (``make_jobs``, ``job_steps``).

    The writer calls, for each record of the provider: ``seen`` (off the request path): the jobs the
    record shows and its cost, or None when it touches none, priced then as any record, with
    ``plain_cost`` for what the provider bills (None: the generic price book); before the write
    transaction, ``lookups`` (what it must fetch to price jobs that end here: ``(what, slug)`` pairs)
    and ``look_up`` for each, on the event loop; in the transaction, ``settle`` for each sighting, which
    records the job's lifecycle in the ledger (``store.log_base.LogBatch``) and, on a job's first end,
    prices it onto the row and returns what it cost. ``poll_interval`` (None: off) and ``poll_path``
    let the writer poll jobs nobody polls (``logs/autopoll.py``), one node for the whole gateway.
    """

    poll_interval: float | None

    def seen(self, record: Any, request_json: dict[str, Any] | None, response_json: Any) -> JobsSeen | None: ...

    def plain_cost(self, record: Any) -> Any: ...

    def lookups(self, log_store: Any, pairs: list[tuple[Any, str | None]]) -> set[tuple[str, str]]: ...

    async def look_up(self, what: str, upstream: ProviderApi) -> None: ...

    def settle(self, batch: Any, sighting: Any, row: dict[str, Any]) -> Spend | None: ...

    def poll_path(self, job_id: str) -> str: ...


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider as data.

    ``unified`` lists the unified endpoints the provider serves; an empty set means proxy-only
    (every ``/v1/<path>`` is forwarded untouched, even paths that are unified endpoints for others).
    ``adapter`` names the module under ``modelport.providers`` whose ``ADAPTER`` translates unified
    requests (loaded on first use by the registry); None for OpenAI-compatible providers, whose unified
    requests pass through unchanged to ``base_url + path``. ``auth`` adds the credential to each request
    just before it is sent (``ProviderAuth``). ``settings`` declares every provider-specific value
    (``Setting``); a required one may be a ``{name}`` in ``base_url`` (Azure's resource). ``default_headers``
    are static headers added to every upstream request (caller's wins); a header whose value is a setting
    is that setting's ``upstream_header`` instead. ``policy`` names the module whose
    ``make_policy(settings, store)`` returns the provider's ``ExchangePolicy`` for proxied requests (or
    None when its settings turn it off). ``jobs`` names the module of its ``ProviderJobs``: the log
    writer's hook for a provider whose calls start jobs that end later and are priced then (Replicate's
    predictions).
    """

    id: str
    base_url: str
    auth: ProviderAuth = BEARER
    unified: frozenset[str] = frozenset()
    adapter: str | None = None
    settings: tuple[Setting, ...] = ()
    default_headers: Mapping[str, str] = field(default_factory=dict)
    rewrite: Any = None  # a providers.rewrite.UrlRewrite when responses carry absolute upstream URLs
    caller_headers: tuple[str, ...] = ()  # client headers that always reach the provider, over adapter defaults
    models: tuple[ModelRule, ...] = MODEL_IN_BODY  # where proxied requests name their model; first match wins
    policy: str | None = None  # module under modelport.providers whose make_policy() gives its ExchangePolicy
    jobs: str | None = None  # module under modelport.providers whose make_jobs() gives its ProviderJobs
    docs: str = ""
    # Derived once from ``settings`` (the request path reads them): see __post_init__.
    requires: tuple[str, ...] = field(init=False, repr=False, compare=False)
    setting_names: frozenset[str] = field(init=False, repr=False, compare=False)
    _upstream: tuple[tuple[str, str, str | None], ...] = field(init=False, repr=False, compare=False)
    _defaults: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [s.name for s in self.settings]
        if len(set(names)) != len(names):
            raise ValueError(f"provider {self.id!r} declares a setting twice: {names}")
        object.__setattr__(self, "requires", tuple(s.name for s in self.settings if s.required))
        object.__setattr__(self, "setting_names", frozenset(names))
        object.__setattr__(self, "_upstream", tuple((s.name, s.upstream_header, s.default)
                                                    for s in self.settings if s.upstream_header))
        defaults = {name.lower(): value for name, value in self.default_headers.items()}
        defaults.update({header: default for _, header, default in self._upstream if default})
        object.__setattr__(self, "_defaults", MappingProxyType(defaults))

    @property
    def proxy_only(self) -> bool:
        return not self.unified

    def setting(self, name: str) -> Setting | None:
        return next((s for s in self.settings if s.name == name), None)

    def headers_for(self, settings: Mapping[str, Any]) -> Mapping[str, str]:
        """The headers every request to the provider's API starts from (read-only: copy to change it):
        the static defaults and each setting's ``upstream_header`` (its value, else its default)."""
        if not settings:  # most requests: the defaults alone, built once
            return self._defaults
        headers = dict(self._defaults)
        for name, header, _ in self._upstream:
            value = settings.get(name)
            if value:
                headers[header] = str(value)
        return headers
