"""The one request path: parse → authenticate → resolve → route → forward → respond → record.

Every inference request — unified or proxied, any provider — goes through ``Gateway.__call__``.
Features are steps here or in the modules it calls, never a second path.
"""

from __future__ import annotations

import time
from typing import Any

from ..log_record import LogRecord, Recorder
from ..providers.base import MULTIPART_ENDPOINTS, Answer, Exchange, ExchangePolicy, Forward, ProviderSpec
from ..providers.registry import make_policy
from ..asgi import ClientDisconnected, Headers, Receive, Scope, Send, read_body, send_error, stream_body
from ..settings import Settings
from ..store.base import Store
from ..store.counters import Counters, local_counters
from ..store.redis import open_redis
from ..store.redis_cache import RedisEntries
from .admission import Admission, KeyRefused
from .allowed_models import check_model, check_proxied_model
from .auth import Authenticator, Principal
from .cache import CachedResponse, ResponseCache, cache_key, credential_scope
from .configs import ConfigPlanner
from ..errors import BadRequest, GatewayError, PayloadTooLarge
from .forward import Outbound, proxy_headers, send_to_provider, upstream_url
from .budgets import Reserver
from .headers import RequestOptions, parse_request_options
from ..hosts import HostRules
from .limits import BudgetExhausted, LimitExceeded, Limiter, LimitsUnavailable, TokenLimitExceeded
from .paths import normalised_path
from .resolve import TargetResolver
from .respond import Relayed, Rewriting, Screen, relay
from ..providers.rewrite import public_base
from .routing import Leaf, Outcome, execute
from .steps import AttemptSteps
from .stored_responses import StoredResponses, over_chat
from .streams import StreamSigner
from .unified import UnifiedCall, takes_unified_path, unified_endpoint
from ..transport.send import NOT_CONNECTED, UpstreamClient
from ..transport.sessions import Upstreams

BUFFER_LIMIT = 4 * 1024 * 1024  # bodies up to this are held (and so can be retried); larger ones stream
_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
CACHEABLE = frozenset({"chat", "completions", "embeddings"})
# Statuses that prove a POST created nothing upstream, so replaying it cannot duplicate a prediction.
_NOT_CREATED = frozenset({408, 425, 429})


class Gateway:
    def __init__(self, settings: Settings, store: Store, counters: Counters, upstreams: Upstreams, recorder: Recorder,
                 signer: StreamSigner) -> None:  # fmt: skip
        self.settings = settings
        # With counters on Redis and fail open, the node's own file tallies what was admitted unchecked.
        tally = local_counters(settings.data_dir) if settings.redis_url and settings.limits_fail_open else None
        self.limiter = Limiter(counters, fail_open=settings.limits_fail_open, tally=tally)
        self.reserver = Reserver(settings)
        self.upstreams = upstreams
        self.recorder = recorder
        self.signer = signer
        self.auth = Authenticator(store, settings.require_api_key)
        self.resolver = TargetResolver(store, self.auth.version, HostRules.from_settings(settings))
        self.planner = ConfigPlanner(store, self.resolver, self.auth.version)
        self.redis = open_redis(settings) if settings.redis_url else None
        self.cache = ResponseCache(settings.cache_max_bytes, shared=RedisEntries(self.redis) if self.redis else None)
        self.store = store
        self.stored_responses = StoredResponses(store, settings)
        self._policies: dict[str, ExchangePolicy | None] = {}
        self._transports: dict[str, UpstreamClient] = {}
        # What records keep. With logging off only the metrics read them: no headers, no bodies.
        self.log_headers = settings.logging
        self.log_body_cap = settings.log_body_max_bytes if settings.logging else 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method = scope["method"]
        path = _path_after_v1(scope)
        record = LogRecord(trace_id="", method=method, path="/v1" + path)
        options: RequestOptions | None = None
        admission: Admission | None = None
        try:
            if self.log_headers:
                record.request_headers = scope["headers"]  # decoded by the log writer, off the request path
            options = parse_request_options(scope["headers"])
            record.trace_id = options.trace_id
            path = normalised_path(path)  # once: every step below routes on the same path
            principal = self.auth.authenticate(options.api_key)
            _note_principal(record, principal, options)
            admission = Admission(self.limiter, self.reserver, principal)
            outbound = await self._read(method, path, scope, receive, options)
            tree = self.planner.plan(options, principal, _model_route(options, outbound))
            self._capture_request(record, outbound)
            client = Client(scope, receive, send, self.settings.public_url)
            try:
                outcome = await execute(tree, _Attempts(self, outbound, record, principal, admission, client))
                if admission.key_pending:  # no attempt counted it (a cache hit, a failure before the upstream)
                    try:
                        await admission.count_key()
                    except GatewayError:
                        outcome.release()
                        raise
                await self.respond(outcome, client, record, admission)
            finally:
                if admission.held:  # the request ended before an answer took them (a failure, a client gone)
                    await admission.release()
        except KeyRefused as refused:
            refused.error.__traceback__ = None
            await self._fail(send, record, refused.error, options)
        except GatewayError as error:
            error.__traceback__ = None  # its frames (this one too) hold the request: no cycle to wait on
            if admission is not None and admission.key_pending:  # over its key's limit, the caller hears that first
                error = await self._key_refusal(admission, error)
            await self._fail(send, record, error, options)
        except ClientDisconnected:
            record.failed(499, "the client disconnected before sending the whole request", gateway_exception=False)
        finally:
            record.finished(started)
            self.recorder.submit(record)

    async def respond(self, outcome: Outcome, client: Client, record: LogRecord, admission: Admission) -> None:
        """Step 7: answer the client from the outcome that routing chose, and note what it got."""
        leaf = outcome.leaf
        record.provider, record.slug = leaf.resolved.spec.id, leaf.resolved.target.slug
        record.retry_count = -1 if outcome.retry_exhausted else outcome.retries
        record.last_used_index = leaf.index or None
        if outcome.error is not None:
            raise outcome.error
        record.reservations = admission.hand_over()  # the log service settles them to the real usage once it has read it
        record.upstream_latency_ms = record.attempts[-1].latency_ms if record.attempts else None
        extra = _portkey_headers(outcome, record, admission)
        cap = self.log_body_cap
        if record.reservations and not cap:  # logging off: the log service still reads the usage to settle them
            cap = self.settings.log_body_max_bytes
        keep = max(cap, self.cache.max_entry_bytes) if outcome.cache_key else cap
        response = outcome.response
        if isinstance(response, CachedResponse):
            relayed = await _send_cached(client.send, response, extra)
        elif outcome.translator is not None:
            relayed = await outcome.translator.respond(client.send, client.receive, response, extra, keep)
        else:
            relayed = await relay(client.send, client.receive, response, extra, keep, self._rewriting(leaf, client, record),
                                  self._screen(outcome))
        outcome.release()
        if outcome.cache_key and 200 <= relayed.status < 300 and relayed.size == len(relayed.captured) and not relayed.error:
            content_type = relayed.content_type.encode("latin-1") or b"application/json"
            await self.cache.put(outcome.cache_key, relayed.status, [(b"content-type", content_type)],
                                 bytes(relayed.captured), outcome.cache_max_age)
        if len(relayed.captured) > cap:
            del relayed.captured[cap:]
        relayed.fill(record, self.log_headers)

    def _rewriting(self, leaf: Leaf, client: Client, record: LogRecord) -> Rewriting | None:
        rule = leaf.resolved.spec.rewrite
        if rule is None:
            return None
        gateway_base = client.gateway_base()
        signer, guarded, trace = self.signer, leaf.resolved.caller_chosen_host, record.trace_id
        provider, slug, key_id = leaf.resolved.spec.id, leaf.resolved.target.slug, record.key_id

        def sign(url: str, prediction_id: str | None) -> str:
            return signer.link(gateway_base, url, g=guarded, t=trace, p=provider, s=slug, k=key_id, i=prediction_id)

        return Rewriting(rule, leaf.resolved.target.base_url, gateway_base, sign)

    def _screen(self, outcome: Outcome) -> Screen | None:
        """The policy's look at the response before it is relayed, when it wants one for this request."""
        exchange = outcome.exchange
        policy = self.policy_for(outcome.leaf.resolved.spec) if exchange is not None else None
        if policy is None or not policy.wants_screen(exchange):
            return None
        return lambda status, body: policy.screen(exchange, status, body)

    def transport_for(self, spec: ProviderSpec) -> UpstreamClient:
        """The transport ``spec``'s ProviderAuth makes its own calls on (providers/base.py ``Transport``): the
        SSRF-guarded side, as a caller-chosen host (their URLs come from settings a caller may set)."""
        transport = self._transports.get(spec.id)
        if transport is None:
            transport = self._transports[spec.id] = UpstreamClient(
                self.upstreams, f"{spec.id}'s auth", self.settings.upstream_timeout, guarded=True,
                allow_private=self.settings.allow_private_hosts)
        return transport

    async def _key_refusal(self, admission: Admission, error: GatewayError) -> GatewayError:
        """A request that failed before an attempt counted it, counted on its key now: the key's refusal
        if it is over a limit, else the request's own error."""
        if isinstance(error, LimitsUnavailable):
            return error
        try:
            await admission.count_key()
        except GatewayError as refusal:
            refusal.__traceback__ = None
            return refusal
        return error

    def policy_for(self, spec: ProviderSpec) -> ExchangePolicy | None:
        """The provider's rules around proxied requests (authorize before forwarding, screen after), built once."""
        if spec.id not in self._policies:
            self._policies[spec.id] = make_policy(spec, self.settings, self.store)
        return self._policies[spec.id]

    async def _read(self, method: str, path: str, scope: Scope, receive: Receive, options: RequestOptions) -> Outbound:
        query = scope.get("query_string", b"").decode("latin-1")
        endpoint = unified_endpoint(method, path)
        length = options.content_length
        limit = self.settings.max_body_bytes
        if length is not None and length > limit:
            raise PayloadTooLarge(f"request body of {length} bytes exceeds the gateway limit of {limit} bytes (MODELPORT_MAX_BODY_BYTES)")
        # A unified JSON body is held (it may be translated); a large audio upload streams through as on the proxy route.
        held_endpoint = endpoint is not None and endpoint not in MULTIPART_ENDPOINTS
        if (length is not None and length <= BUFFER_LIMIT) or (length is None and method in _BODYLESS) or held_endpoint:
            return Outbound(method, path, query, options, await read_body(receive, limit), endpoint=endpoint)
        return Outbound(method, path, query, options, None, stream_body(receive, limit), endpoint=endpoint)

    def _capture_request(self, record: LogRecord, outbound: Outbound) -> None:
        """Keep the first bytes of the request body for the log (a streamed body as it passes). Captured
        even when bodies are not stored: the writer reads usage and cost from them, then drops them."""
        cap = self.log_body_cap
        if outbound.body is not None:
            record.request_bytes = len(outbound.body)
            if cap and outbound.body:
                record.request_body = outbound.body[:cap]
        elif outbound.body_stream is not None:
            record.request_bytes = outbound.options.content_length or 0
            outbound.body_stream = _teed(outbound.body_stream, record, cap)

    async def _fail(self, send: Send, record: LogRecord, error: GatewayError, options: RequestOptions | None) -> None:
        if not record.trace_id:
            record.trace_id = options.trace_id if options else error.trace_id
        record.failed(error.status, error.message)
        if record.response_bytes == 0 and not record.stream:  # nothing sent yet
            await send_error(send, error, record.trace_id)


class Client:
    """The caller's end of one request: its ASGI channel, and the gateway's public ``/v1`` root as the
    caller reached it (or as the operator set it), built (and the Host checked) at most once."""

    __slots__ = ("scope", "receive", "send", "public_url", "public_base")

    def __init__(self, scope: Scope, receive: Receive, send: Send, public_url: str | None) -> None:
        self.scope, self.receive, self.send, self.public_url = scope, receive, send, public_url
        self.public_base: str | None = None

    def gateway_base(self) -> str:
        if self.public_base is None:
            self.public_base = public_base(self.public_url, self.scope)
        return self.public_base


class _Attempts:
    """The ``Walk`` the router drives for one request: each attempt's outcome owns what it made (its
    translator, the exchange its policy saw, its cache key); the limits it counts are the ``Admission``'s."""

    __slots__ = ("gateway", "outbound", "record", "principal", "admission", "client")

    def __init__(self, gateway: Gateway, outbound: Outbound, record: LogRecord, principal: Principal,
                 admission: Admission, client: Client) -> None:  # fmt: skip
        self.gateway, self.outbound, self.record, self.principal = gateway, outbound, record, principal
        self.admission, self.client = admission, client

    def routing_context(self) -> dict[str, Any]:
        params = self.outbound.json.fields()
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in self.client.scope["headers"]}
        return {"metadata": self.record.metadata, "params": params, "url": {"pathname": "/v1" + self.outbound.path},
                "headers": headers}

    def may_retry(self, outcome: Outcome) -> bool:
        if self.outbound.body is None:
            return False  # a streamed body was consumed by the first attempt
        if isinstance(outcome.error, (LimitExceeded, TokenLimitExceeded, BudgetExhausted)):
            return False  # the window will not reset within a backoff; a fallback target may take it
        if self.outbound.method != "POST" or self.outbound.endpoint:
            return True
        return outcome.status in _NOT_CREATED or (outcome.error is not None and outcome.error.code == NOT_CONNECTED)

    async def attempt(self, leaf: Leaf, retry: int) -> Outcome:
        gateway, outbound, resolved = self.gateway, self.outbound, leaf.resolved
        span = self.record.attempt(leaf.index, resolved.spec.id, resolved.target.slug, retry)
        await self.admission.next_attempt()
        outcome = Outcome(leaf, 0)
        started = time.perf_counter()
        try:
            endpoint = outbound.endpoint
            if endpoint is not None and takes_unified_path(endpoint, resolved.spec):
                request = await self._translated(leaf, endpoint, outcome)
            else:
                request = await self._proxied(leaf, outcome)
            if request is not None:
                method, url, headers, body = request
                await self.admission.admit(resolved, outbound, outcome.translator)
                timeout = outbound.options.request_timeout or leaf.timeout
                outcome.response = await send_to_provider(gateway.upstreams, gateway.transport_for(resolved.spec), resolved,
                                                          method, url, headers, body, timeout)
                outcome.status = outcome.response.status
            span.status = outcome.status
        except KeyRefused:
            self.record.attempts.pop()  # refused on the key's account: no attempt was made
            raise
        except GatewayError as error:
            span.status, span.error = error.status, error.message
            outcome.status, outcome.error = error.status, error
        finally:
            span.latency_ms = (time.perf_counter() - started) * 1000
        return outcome

    async def _translated(self, leaf: Leaf, endpoint: str, outcome: Outcome) -> tuple[str, Any, dict[str, str], Any] | None:
        """The upstream request of a unified call, or None when the attempt is answered already (from the
        cache, or by a multi-step call's first steps)."""
        outbound = self.outbound
        translator = outcome.translator = UnifiedCall.prepare(endpoint, outbound, leaf, self.record)
        if endpoint == "responses" and over_chat(leaf.resolved.spec):  # the gateway keeps its conversations
            await self.gateway.stored_responses.begin_turn(translator, self.principal)
        check_model(leaf.resolved, translator.body.get("model"))
        cached = await self._cached(leaf, endpoint, outcome)
        if cached is not None:
            outcome.status, outcome.response = cached.status, cached
            return None
        if translator.multi_step:  # its requests go through the steps, on this attempt's transport
            await self.admission.admit(leaf.resolved, outbound, translator)
            answer = await translator.begin(self._steps(leaf, translator))
            outcome.status, outcome.response = answer.status, answer
            return None
        method, url, headers, body = translator.request()
        if outbound.body is None and outbound.options.content_length is not None:
            headers["content-length"] = str(outbound.options.content_length)
        return method, url, headers, body

    async def _proxied(self, leaf: Leaf, outcome: Outcome) -> tuple[str, Any, dict[str, str], Any] | None:
        """The upstream request of a proxied call, or None when the provider's policy answers it itself."""
        outbound, resolved, stored_responses = self.outbound, leaf.resolved, self.gateway.stored_responses
        if stored_responses.answers(outbound, resolved.spec):  # a response the gateway keeps
            stored = await stored_responses.answer(outbound, self.principal)
            outcome.status, outcome.response = stored.status, _answered(stored)
            return None
        check_proxied_model(leaf, outbound)
        if resolved.spec.rewrite is not None:
            self.client.gateway_base()  # a Host we could not write into the response: refused before anything upstream
        answer = await self._authorize(resolved, outcome)
        if isinstance(answer, Answer):  # the provider's policy answers for it: nothing goes upstream
            outcome.status, outcome.response = answer.status, _answered(answer)
            return None
        url = upstream_url(resolved.target.base_url, outbound.path, outbound.query)
        headers = proxy_headers(outbound.options, resolved.spec, resolved.target)
        body = answer.body if isinstance(answer, Forward) else UnifiedCall.proxy_body(outbound, leaf)
        if outbound.body is None and outbound.options.content_length is not None:
            headers["content-length"] = str(outbound.options.content_length)
        return outbound.method, url, headers, body

    def _steps(self, leaf: Leaf, translator: UnifiedCall) -> AttemptSteps:
        gateway, principal, resolved = self.gateway, self.principal, leaf.resolved
        timeout = self.outbound.options.request_timeout or leaf.timeout or gateway.settings.upstream_timeout
        return AttemptSteps(gateway.upstreams, gateway.transport_for(resolved.spec), resolved, translator.adapter_headers,
                            gateway.policy_for(resolved.spec),
                            principal.key_id, "admin" in principal.scopes, self.record, timeout,
                            gateway.settings.allow_private_hosts)

    async def _authorize(self, resolved: Any, outcome: Outcome) -> Answer | Forward | None:
        """Ask the provider's policy (if it has one) about this proxied request, before it is forwarded."""
        policy = self.gateway.policy_for(resolved.spec)
        if policy is None:
            return None
        outbound, principal = self.outbound, self.principal
        outcome.exchange = Exchange(outbound.method, outbound.path, outbound.query, outbound.body, resolved.target,
                                    principal.key_id, "admin" in principal.scopes, outbound.json,
                                    self.client.public_base or "")
        return await policy.authorize(outcome.exchange)

    async def _cached(self, leaf: Leaf, endpoint: str, outcome: Outcome) -> CachedResponse | None:
        """Look the request up in the cache when its config (or ``x-portkey-cache-ttl``) asks for one; note
        the cache status."""
        options = self.outbound.options
        if leaf.cache is None and options.cache_ttl is None:
            return None
        if endpoint not in CACHEABLE or outcome.translator.stream:
            return None
        target, gateway = leaf.resolved.target, self.gateway
        key_id = None if gateway.settings.cache_share_across_keys else self.principal.key_id
        outcome.cache_key = cache_key(provider=target.provider, credential=credential_scope(target.slug, target.api_key),
                                      key_id=key_id, path=self.outbound.path, body=outcome.translator.body,
                                      namespace=options.cache_namespace)
        outcome.cache_max_age = options.cache_ttl if options.cache_ttl is not None else leaf.cache.max_age  # type: ignore[union-attr]
        if options.cache_force_refresh:
            self.record.cache_status = "REFRESH"
            return None
        hit = await gateway.cache.get(outcome.cache_key, outcome.cache_max_age)
        self.record.cache_status = "HIT" if hit is not None else "MISS"
        return hit


def _portkey_headers(outcome: Outcome, record: LogRecord, admission: Admission) -> Headers:
    headers = [
        (b"x-portkey-trace-id", record.trace_id.encode("latin-1")),
        (b"x-portkey-provider", outcome.leaf.resolved.spec.id.encode()),
        (b"x-portkey-retry-attempt-count", str(record.retry_count).encode()),
        (b"x-portkey-cache-status", record.cache_status.encode()),
    ]
    if outcome.leaf.index:  # only when a config routed the request
        headers.append((b"x-portkey-last-used-option-index", outcome.leaf.index.encode()))
    headers += admission.headers()
    return headers


async def _send_cached(send: Send, cached: CachedResponse, extra: Headers) -> Relayed:
    headers = list(cached.headers) + extra + [(b"content-length", str(len(cached.body)).encode())]
    await send({"type": "http.response.start", "status": cached.status, "headers": headers})
    await send({"type": "http.response.body", "body": cached.body})
    content_type = dict(cached.headers).get(b"content-type", b"").decode("latin-1")
    relayed = Relayed(cached.status, cached.headers, size=len(cached.body), content_type=content_type)
    relayed.captured += cached.body
    return relayed


def _answered(answer: Answer) -> CachedResponse:
    """A policy's answer as a ready response (sent like a cached one)."""
    return CachedResponse(answer.status, ((b"content-type", answer.content_type.encode("latin-1")),), answer.body, time.time())


def _model_route(options: RequestOptions, outbound: Outbound) -> tuple[str, str] | None:
    """Portkey 2.x: ``"model": "@slug/model"`` names the stored provider when no header chose one."""
    if options.provider or options.virtual_key or options.config or outbound.endpoint is None or not outbound.body:
        return None
    model = outbound.json.fields().get("model")
    if not isinstance(model, str) or not model.startswith("@") or "/" not in model:
        return None
    slug, _, name = model[1:].partition("/")
    if not slug or not name:
        raise BadRequest(f"model '{model}' must be '@provider-slug/model-name'", code="invalid_model")
    return slug, name


def _path_after_v1(scope: Scope) -> str:
    raw = scope.get("raw_path") or scope["path"].encode()
    path = raw.split(b"?", 1)[0].decode("latin-1")
    return path[3:] if path.startswith("/v1") else path


async def _teed(stream, record: LogRecord, cap: int):
    """Pass a streamed request body through, keeping its first ``cap`` bytes and counting the rest."""
    kept = bytearray()
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
        yield chunk
    record.request_bytes = size
    record.request_body = bytes(kept) if kept else None


def _note_principal(record: LogRecord, principal: Principal, options: RequestOptions) -> None:
    record.key_id, record.key_name = principal.key_id, principal.name
    record.span_id, record.parent_span_id, record.span_name = options.span
    record.metadata = {**principal.metadata, **options.metadata}  # a dict the log writer can serialize
    record.store_bodies = principal.log_bodies
