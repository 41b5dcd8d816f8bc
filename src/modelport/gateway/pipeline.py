"""The one request path: parse → authenticate → resolve → route → forward → respond → record.

Every inference request — unified or proxied, any provider — goes through ``Gateway.__call__``.
Features are steps here or in the modules it calls, never a second path.
"""

from __future__ import annotations

import time
from typing import Any

from ..log_record import Attempt, LogRecord, Recorder
from ..providers.base import MULTIPART_ENDPOINTS, Answer, Exchange, ExchangePolicy, Forward, ProviderSpec
from ..providers.registry import make_policy
from ..asgi import ClientDisconnected, Headers, Receive, Scope, Send, read_body, send_error, stream_body
from ..settings import Settings
from ..store.base import Store
from ..store.counters import Counters, local_counters
from ..store.redis import open_redis
from ..store.redis_cache import RedisEntries
from ..usage.limits import Charge
from .allowed_models import check_model, check_proxied_model
from .auth import Authenticator, Principal
from .cache import CachedResponse, ResponseCache, cache_key, credential_scope
from .configs import ConfigPlanner
from ..errors import BadRequest, GatewayError, PayloadTooLarge
from .forward import Outbound, proxy_headers, send_to_provider, upstream_url
from .budgets import Reserver
from .headers import RequestOptions, parse_request_options
from ..hosts import HostRules
from .limits import (
    BudgetExhausted,
    LimitExceeded,
    Limiter,
    LimitsUnavailable,
    Rule,
    Standing,
    TokenLimitExceeded,
    header_pairs,
)
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
        principal: Principal | None = None
        call: _Call | None = None
        try:
            if self.log_headers:
                record.request_headers = scope["headers"]  # decoded by the log writer, off the request path
            options = parse_request_options(scope["headers"])
            record.trace_id = options.trace_id
            path = normalised_path(path)  # once: every step below routes on the same path
            principal = self.auth.authenticate(options.api_key)
            _note_principal(record, principal, options)
            outbound = await self._read(method, path, scope, receive, options)
            tree = self.planner.plan(options, principal, _model_route(options, outbound))
            self._capture_request(record, outbound)
            call = _Call(self, scope, receive, send, outbound, record, principal)
            try:
                outcome = await execute(tree, call)
                if call.key_pending:  # no attempt counted it (a cache hit, a failure before the upstream)
                    try:
                        await call.count_key()
                    except GatewayError:
                        outcome.release()
                        raise
                await call.respond(outcome)
            finally:
                await call.release_unsettled()
        except _KeyRefused as refused:
            refused.error.__traceback__ = None
            await self._fail(send, record, refused.error, options)
        except GatewayError as error:
            error.__traceback__ = None  # its frames (this one too) hold the request: no cycle to wait on
            if call is None or call.key_pending:  # over its key's limit, the caller hears that first
                error = await self._key_refusal(principal, error)
            await self._fail(send, record, error, options)
        except ClientDisconnected:
            record.status, record.error = 499, "the client disconnected before sending the whole request"
        finally:
            record.latency_ms = (time.perf_counter() - started) * 1000
            self.recorder.submit(record)

    def transport_for(self, spec: ProviderSpec) -> UpstreamClient:
        """The transport ``spec``'s ProviderAuth makes its own calls on (providers/base.py ``Transport``): the
        SSRF-guarded side, as a caller-chosen host (their URLs come from settings a caller may set)."""
        transport = self._transports.get(spec.id)
        if transport is None:
            transport = self._transports[spec.id] = UpstreamClient(
                self.upstreams, f"{spec.id}'s auth", self.settings.upstream_timeout, guarded=True,
                allow_private=self.settings.allow_private_hosts)
        return transport

    async def _key_refusal(self, principal: Principal | None, error: GatewayError) -> GatewayError:
        """A request that failed before an attempt counted it, counted on its key now: the key's refusal
        if it is over a limit, else the request's own error."""
        if principal is None or not principal.rate_limits or isinstance(error, LimitsUnavailable):
            return error
        try:
            await self.limiter.admit(principal.rate_limits)
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
        record.status, record.error, record.gateway_exception = error.status, error.message, True
        if record.response_bytes == 0 and not record.stream:  # nothing sent yet
            await send_error(send, error, record.trace_id)


class _KeyRefused(Exception):
    """The key's own limit refused the request in an attempt's admission: the whole request ends there,
    no fallback tried, as if it had been refused on arrival."""

    def __init__(self, error: LimitExceeded) -> None:
        self.error = error


class _Call:
    """The per-request state the attempt and respond steps share; also the ``Walk`` the router drives."""

    __slots__ = ("gateway", "scope", "receive", "send", "outbound", "record", "principal", "unified", "cache_key",
                 "cache_max_age", "key_pending", "key_standings", "provider_standings", "token_standings", "held",
                 "public_base", "exchange")

    def __init__(self, gateway: Gateway, scope: Scope, receive: Receive, send: Send, outbound: Outbound,
                 record: LogRecord, principal: Principal) -> None:
        self.gateway, self.scope, self.receive, self.send = gateway, scope, receive, send
        self.outbound, self.record, self.principal = outbound, record, principal
        # The key's limits count each request once: in the first attempt's admission, with the provider's
        # limits and the budgets (one step, one round trip to Redis), or at the end if no attempt got there.
        self.key_pending: tuple[Rule, ...] = principal.rate_limits
        self.key_standings: list[Standing] = []
        self.provider_standings: list[Standing] = []  # the limits of the provider the last attempt reached
        self.token_standings: list[Standing] = []  # the token limits (key's and provider's) it holds amounts on
        self.held: list[tuple[Charge, str]] = []  # what the last attempt holds on its budgets, with their kinds
        self.unified: UnifiedCall | None = None
        self.cache_key: str | None = None
        self.cache_max_age: float | None = None
        self.public_base: str | None = None  # built (and the Host checked) at most once per request
        self.exchange: Exchange | None = None  # the last attempt's request, when its provider has a policy

    def routing_context(self) -> dict[str, Any]:
        params = UnifiedCall.peek_json(self.outbound) if self.outbound.body else {}
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in self.scope["headers"]}
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
        gateway, outbound = self.gateway, self.outbound
        resolved = leaf.resolved
        span = Attempt(index=leaf.index, provider=resolved.spec.id, slug=resolved.target.slug, started_at=time.time(), retry=retry)
        self.record.attempts.append(span)
        self.provider_standings, self.token_standings = [], []
        await self.release_unsettled()  # a new attempt: the last one failed, and what it held goes back
        self.exchange = None
        started = time.perf_counter()
        try:
            endpoint = outbound.endpoint
            if endpoint is not None and takes_unified_path(endpoint, resolved.spec):
                self.unified = UnifiedCall.prepare(endpoint, outbound, leaf, self.record)
                if endpoint == "responses" and over_chat(resolved.spec):  # the gateway keeps its conversations
                    await gateway.stored_responses.begin_turn(self.unified, self.principal)
                check_model(resolved, self.unified.body.get("model"))
                cached = await self._cached(leaf, endpoint)
                if cached is not None:
                    span.status = cached.status
                    return Outcome(leaf, cached.status, response=cached)
                if self.unified.multi_step:  # its requests go through the steps, on this attempt's transport
                    await self._admit(resolved)
                    answer = await self.unified.begin(self._steps(leaf))
                    span.status = answer.status
                    return Outcome(leaf, answer.status, response=answer)
                method, url, headers, body = self.unified.request()
                if outbound.body is None and outbound.options.content_length is not None:
                    headers["content-length"] = str(outbound.options.content_length)
            else:
                self.unified = None
                if gateway.stored_responses.answers(outbound, resolved.spec):  # a response the gateway keeps
                    stored = await gateway.stored_responses.answer(outbound, self.principal)
                    span.status = stored.status
                    return Outcome(leaf, stored.status, response=_answered(stored))
                check_proxied_model(leaf, outbound)
                if resolved.spec.rewrite is not None:
                    self.gateway_base()  # a Host we could not write into the response: refused before anything upstream
                answer = await self._authorize(resolved)
                if isinstance(answer, Answer):  # the provider's policy answers for it: nothing goes upstream
                    span.status = answer.status
                    return Outcome(leaf, answer.status, response=_answered(answer))
                method, url = outbound.method, upstream_url(resolved.target.base_url, outbound.path, outbound.query)
                headers = proxy_headers(outbound.options, resolved.spec, resolved.target)
                body = answer.body if isinstance(answer, Forward) else UnifiedCall.proxy_body(outbound, leaf)
                if outbound.body is None and outbound.options.content_length is not None:
                    headers["content-length"] = str(outbound.options.content_length)
            await self._admit(resolved)
            timeout = outbound.options.request_timeout or leaf.timeout
            response = await send_to_provider(gateway.upstreams, gateway.transport_for(resolved.spec), resolved, method, url,
                                              headers, body, timeout)
            span.status = response.status
            return Outcome(leaf, response.status, response=response)
        except GatewayError as error:
            span.status, span.error = error.status, error.message
            return Outcome(leaf, error.status, error=error)
        finally:
            span.latency_ms = (time.perf_counter() - started) * 1000

    def _steps(self, leaf: Leaf) -> AttemptSteps:
        gateway, principal, resolved = self.gateway, self.principal, leaf.resolved
        timeout = self.outbound.options.request_timeout or leaf.timeout or gateway.settings.upstream_timeout
        return AttemptSteps(gateway.upstreams, gateway.transport_for(resolved.spec), resolved, self.unified.adapter_headers,  # type: ignore[union-attr]
                            gateway.policy_for(resolved.spec),
                            principal.key_id, "admin" in principal.scopes, self.record, timeout,
                            gateway.settings.allow_private_hosts)

    async def _authorize(self, resolved: Any) -> Answer | Forward | None:
        """Ask the provider's policy (if it has one) about this proxied request, before it is forwarded."""
        policy = self.gateway.policy_for(resolved.spec)
        if policy is None:
            return None
        outbound, principal = self.outbound, self.principal
        self.exchange = Exchange(outbound.method, outbound.path, outbound.query, outbound.body, resolved.target,
                                 principal.key_id, "admin" in principal.scopes, self.public_base or "")
        return await policy.authorize(self.exchange)

    def _screen(self, leaf: Leaf) -> Screen | None:
        """The policy's look at the response before it is relayed, when it wants one for this request."""
        exchange = self.exchange
        policy = self.gateway.policy_for(leaf.resolved.spec) if exchange is not None else None
        if policy is None or not policy.wants_screen(exchange):
            return None
        return lambda status, body: policy.screen(exchange, status, body)

    async def _admit(self, resolved: Any) -> None:
        """The provider's rate limits and both budgets (and the key's limits, on the first admission), in
        one step, just before the upstream call."""
        principal, key_rules = self.principal, self.key_pending
        budgets = [b for b in (principal.budget, resolved.budget) if b is not None]
        budgets += principal.token_limits + resolved.token_limits
        if not budgets and not resolved.rate_limits and not key_rules:
            return
        body = None  # proxied: nothing bounds what it may cost
        if self.unified is not None:  # the bytes may have gone unparsed (an OpenAI-compatible provider)
            body = self.unified.body or UnifiedCall.peek_json(self.outbound)
        reserves = self.gateway.reserver.amounts(
            budgets, resolved.spec.id, self.outbound.endpoint, body, len(self.outbound.body or b""),
        ) if budgets else ()  # fmt: skip
        try:
            standings, self.token_standings, charges = await self.gateway.limiter.admit_with_budgets(
                key_rules + resolved.rate_limits, reserves)
        except LimitExceeded as refusal:
            if refusal.rule in key_rules:
                self.record.attempts.pop()  # refused on the key's account: no attempt was made
                raise _KeyRefused(refusal) from None
            raise
        self.key_pending = ()
        if key_rules:
            self.key_standings, standings = standings[:len(key_rules)], standings[len(key_rules):]
        self.provider_standings = standings
        self.held = [(charge, budget.kind) for charge, (budget, _) in zip(charges, reserves)]

    async def count_key(self) -> None:
        """Count the request on its key's limits if no attempt's admission did (raises on a refusal)."""
        rules, self.key_pending = self.key_pending, ()
        if rules:
            self.key_standings = await self.gateway.limiter.admit(rules)

    async def release_unsettled(self) -> None:
        if self.held:
            held, self.held = self.held, []
            await self.gateway.limiter.release([charge for charge, _ in held])

    async def _cached(self, leaf: Leaf, endpoint: str) -> CachedResponse | None:
        """Look the request up in the cache when its config (or ``x-portkey-cache-ttl``) asks for one; note
        the cache status."""
        self.cache_key = None
        options = self.outbound.options
        if leaf.cache is None and options.cache_ttl is None:
            return None
        if endpoint not in CACHEABLE or self.unified is None or self.unified.stream:
            return None
        target, gateway = leaf.resolved.target, self.gateway
        key_id = None if gateway.settings.cache_share_across_keys else self.principal.key_id
        self.cache_key = cache_key(provider=target.provider, credential=credential_scope(target.slug, target.api_key),
                                   key_id=key_id, path=self.outbound.path, body=self.unified.body,
                                   namespace=options.cache_namespace)
        self.cache_max_age = options.cache_ttl if options.cache_ttl is not None else leaf.cache.max_age  # type: ignore[union-attr]
        if options.cache_force_refresh:
            self.record.cache_status = "REFRESH"
            return None
        hit = await gateway.cache.get(self.cache_key, self.cache_max_age)
        self.record.cache_status = "HIT" if hit is not None else "MISS"
        return hit

    async def respond(self, outcome: Outcome) -> None:
        record, leaf = self.record, outcome.leaf
        record.provider, record.slug = leaf.resolved.spec.id, leaf.resolved.target.slug
        record.retry_count = -1 if outcome.retry_exhausted else outcome.retries
        record.last_used_index = leaf.index or None
        if outcome.error is not None:
            raise outcome.error
        if self.held:  # the log service settles them to the real usage once it has read it
            record.reservations = [(charge.key.hex(), *charge[1:], kind) for charge, kind in self.held]
            self.held = []
        record.upstream_latency_ms = self.record.attempts[-1].latency_ms if self.record.attempts else None
        extra = self._portkey_headers(outcome)
        cap = self.gateway.log_body_cap
        if record.reservations and not cap:  # logging off: the log service still reads the usage to settle them
            cap = self.gateway.settings.log_body_max_bytes
        keep = max(cap, self.gateway.cache.max_entry_bytes) if self.cache_key else cap
        if isinstance(outcome.response, CachedResponse):
            relayed = await _send_cached(self.send, outcome.response, extra)
        elif self.unified is not None:
            relayed = await self.unified.respond(self.send, self.receive, outcome.response, extra, keep)
        else:
            relayed = await relay(self.send, self.receive, outcome.response, extra, keep, self._rewriting(leaf),
                                  self._screen(leaf))
        outcome.release()
        if self.cache_key and 200 <= relayed.status < 300 and relayed.size == len(relayed.captured) and not relayed.error:
            content_type = relayed.content_type.encode("latin-1") or b"application/json"
            await self.gateway.cache.put(self.cache_key, relayed.status, [(b"content-type", content_type)],
                                         bytes(relayed.captured), self.cache_max_age)
        if len(relayed.captured) > cap:
            del relayed.captured[cap:]
        record.status = 499 if relayed.disconnected else relayed.status
        record.response_bytes = relayed.size
        if self.gateway.log_headers:
            record.response_headers = relayed.headers
        record.response_content_type = relayed.content_type
        record.stream = "event-stream" in relayed.content_type
        record.error = relayed.error
        record.usage = relayed.usage
        record.response_body = bytes(relayed.captured) or None

    def _portkey_headers(self, outcome: Outcome) -> Headers:
        record = self.record
        headers = [
            (b"x-portkey-trace-id", record.trace_id.encode("latin-1")),
            (b"x-portkey-provider", outcome.leaf.resolved.spec.id.encode()),
            (b"x-portkey-retry-attempt-count", str(record.retry_count).encode()),
            (b"x-portkey-cache-status", record.cache_status.encode()),
        ]
        if outcome.leaf.index:  # only when a config routed the request
            headers.append((b"x-portkey-last-used-option-index", outcome.leaf.index.encode()))
        if self.key_standings or self.provider_standings or self.token_standings:
            now = time.time()
            headers += header_pairs(self.key_standings + self.provider_standings, now)
            if self.token_standings:
                headers += header_pairs(self.token_standings, now, "tokens")
        return headers

    def _rewriting(self, leaf: Leaf) -> Rewriting | None:
        rule = leaf.resolved.spec.rewrite
        if rule is None:
            return None
        gateway_base = self.gateway_base()
        signer, guarded, trace = self.gateway.signer, leaf.resolved.caller_chosen_host, self.record.trace_id
        slug = leaf.resolved.target.slug

        def sign(url: str, prediction_id: str | None) -> str:
            return signer.link(gateway_base, url, g=guarded, t=trace, p=leaf.resolved.spec.id, s=slug,
                               k=self.principal.key_id, i=prediction_id)

        return Rewriting(rule, leaf.resolved.target.base_url, gateway_base, sign)

    def gateway_base(self) -> str:
        """The gateway's public ``/v1`` root as the client reached it (or as the operator set it)."""
        if self.public_base is None:
            self.public_base = public_base(self.gateway.settings.public_url, self.scope)
        return self.public_base


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
    model = UnifiedCall.peek_json(outbound).get("model")
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
