"""The ASGI application: dispatch by path, lifecycle (start, drain, shutdown).

    /health                 readiness
    /metrics                Prometheus text of the whole gateway, relayed from the log service (no auth)
    /dashboard[/...]        the web dashboard (static files; it calls the /v1 APIs with an admin key)
    /v1/streams/<token>     signed provider streams (no auth; the token is the capability)
    /v1/provider-webhooks/<provider>/<slug>  webhook events from providers (no auth; the policy verifies them)
    /v1/<control resource>  control plane: the resources its route table names (control/app.py ``RESOURCES``)
    /v1/<anything else>     the gateway pipeline (unified API or proxy)

Log records go one of two ways. Under ``modelport serve`` (``settings.log_service_address`` set) a
``LogShipper`` hands them to the log service process, which enriches, stores and counts them for all
workers (logs/service.py). The only other way is an app from ``create_app()`` under another ASGI server,
with no supervisor and so no log service: it runs the ``LogWriter`` in-process, on a thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

from ..control.app import RESOURCES as CONTROL_RESOURCES
from ..control.app import ControlPlane
from ..dashboard.serve import PREFIX as DASHBOARD_PREFIX
from ..dashboard.serve import serve_dashboard
from ..errors import GatewayError, MetricsUnavailable, NotFound
from ..gateway.headers import new_trace_id
from ..gateway.pipeline import Gateway
from ..gateway.provider_webhooks import receive_provider_webhook
from ..providers.base import WEBHOOK_ROUTE
from ..gateway.limits import enforced_limits, gauges
from ..gateway.stream_relay import relay_stream
from ..gateway.streams import STREAM_ROUTE, StreamSigner
from ..transport.sessions import Upstreams
from ..logs.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..log_record import LogRecord
from ..logs.shipper import LogShipper
from ..logs.otel import SpanExporter
from ..logs.writer import LogWriter
from ..node_secrets import signing_key
from ..settings import Settings
from ..store import LogStore, Store, open_log_store, open_store
from ..store.counters import open_counters
from ..store.base import utc_now
from ..asgi import Receive, Scope, Send, send_error, send_json, send_response
from .protocol import REFUSED

log = logging.getLogger("modelport")

MAX_REFUSED_PATH = 2048  # of a refused request's path, in its log record
KEY_USE_FLUSH_SECONDS = 5.0  # how stale a key's last_used_at may be; one small write per interval


def worker_gauges() -> str:
    """The answering worker's own figures (the rest of /metrics is the log service's, for all workers):
    its asyncio tasks, so a task left behind by a request shows as growth that does not drain. A scraper
    that wants every worker's scrapes on fresh connections until each pid has answered."""
    return ("# HELP modelport_tasks asyncio tasks alive in this worker (the scrape's own included).\n"
            "# TYPE modelport_tasks gauge\n"
            f'modelport_tasks{{pid="{os.getpid()}"}} {len(asyncio.all_tasks())}\n')


class ModelPortApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ready = False
        self.store: Store | None = None
        self.log_store: LogStore | None = None  # the control plane's reads and feedback writes
        self.gateway: Gateway | None = None
        self.control: Any = None
        self.upstreams = Upstreams(settings)
        self.recorder: LogShipper | LogWriter | None = None
        self.spans: SpanExporter | None = None  # in-process writer only; under `serve` the log service traces
        self._key_use_task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        extensions = scope.get("extensions")
        if extensions is not None and REFUSED in extensions:
            await self._refuse(scope, send, extensions[REFUSED])
            return
        path: str = scope["path"]
        if path.startswith("/v1/"):
            if path.startswith(STREAM_ROUTE):
                await relay_stream(self.gateway, scope, receive, send, path[len(STREAM_ROUTE):])
                return
            if path.startswith(WEBHOOK_ROUTE):
                await receive_provider_webhook(self.gateway, scope, receive, send, path[len(WEBHOOK_ROUTE):])  # type: ignore[arg-type]
                return
            resource = path[4:].split("/", 1)[0]
            if resource in CONTROL_RESOURCES and self.control is not None:
                await self.control(scope, receive, send)
                return
            await self.gateway(scope, receive, send)  # type: ignore[misc]
        elif path == "/openapi.json" and self.control is not None:
            await self.control(scope, receive, send)
        elif path == "/metrics" and self.recorder is not None:
            await self._metrics(send)
        elif path == "/health":
            await self._health(send)
        elif path == DASHBOARD_PREFIX or path.startswith(DASHBOARD_PREFIX + "/"):
            await serve_dashboard(scope, receive, send)
        else:
            await send_error(send, NotFound(f"no route for {path}: the API lives under /v1"), "")

    async def _health(self, send: Send) -> None:
        """200 while serving, "degraded" with the reasons when a shared service is away (a load balancer
        should keep a node whose cache is down); 503 while starting."""
        if not self.ready:
            await send_json(send, 503, {"status": "starting"})
            return
        reasons = self._degraded()
        await send_json(send, 200, {"status": "degraded", "reasons": reasons} if reasons else {"status": "ok"})

    def _degraded(self) -> list[str]:
        reasons = []
        database = self.store.outage() if self.store is not None else None
        if database is not None:
            reasons.append(database)
        redis = self.gateway.redis if self.gateway is not None else None
        outage = redis.outage() if redis is not None else None
        if outage is not None:
            limits = "admitted unchecked" if self.settings.limits_fail_open else "refused (503)"
            reasons.append(f"{outage}: requests under a rate limit or budget are {limits}; the response cache is bypassed")
        return reasons

    async def _refuse(self, scope: Scope, send: Send, error: GatewayError) -> None:
        """Answer and record a request the connection refused before any route saw it (protocol.py)."""
        record = LogRecord(trace_id=new_trace_id(), method=scope["method"], path=scope["path"][:MAX_REFUSED_PATH],
                           status=error.status, gateway_exception=True, error=error.message)
        await send_error(send, error, record.trace_id)
        if self.recorder is not None:
            self.recorder.submit(record)

    async def _metrics(self, send: Send) -> None:
        assert self.recorder is not None
        try:
            text = await self.recorder.render_metrics()
            text += await asyncio.to_thread(self._limit_gauges)
            text += worker_gauges()
        except (OSError, TimeoutError) as exc:
            reason = getattr(exc, "strerror", None) or "it did not answer in time"
            error = MetricsUnavailable(f"the log service, which keeps the metrics, is unreachable ({reason}); try again shortly")
            await send_error(send, error, "")
            return
        await send_response(send, 200, [(b"content-type", METRICS_CONTENT_TYPE.encode())], text.encode())

    def _limit_gauges(self) -> str:
        assert self.gateway is not None
        return gauges(self.gateway.limiter, *enforced_limits(self.store))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:  # report, don't crash with a traceback
                    log.error("startup failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        settings = self.settings
        self.store = open_store(settings)
        await self.upstreams.start()
        self.recorder = self._recorder()
        if self.spans is not None:
            await self.spans.start()
        await self.recorder.start()
        signer = StreamSigner(signing_key(settings, "stream-signing"), settings.stream_url_ttl)
        self.gateway = Gateway(settings, self.store, open_counters(settings), self.upstreams, self.recorder, signer)
        self.ready = True
        self.log_store = open_log_store(settings)
        self.control = ControlPlane(self.store, self.log_store, settings, self.gateway.auth, self.gateway.limiter)
        self._key_use_task = asyncio.create_task(self._record_key_use())

    async def _record_key_use(self) -> None:
        """Write keys' ``last_used_at`` every few seconds, in a thread, never on a request."""
        while True:
            await asyncio.sleep(KEY_USE_FLUSH_SECONDS)
            await self._flush_key_use()

    async def _flush_key_use(self) -> None:
        assert self.gateway is not None
        used = self.gateway.auth.take_used()
        if not used:
            return
        now = utc_now()
        try:
            await asyncio.to_thread(self.store.touch_api_keys, dict.fromkeys(used, now))
        except Exception as exc:  # informational: a busy store must not take the worker down
            log.warning("could not record when %d keys were last used: %s", len(used), exc)

    def _recorder(self) -> LogShipper | LogWriter:
        if self.settings.log_service_address:
            return LogShipper(self.settings)
        # The writer's thread does CPU work in this process; with CPython's default 5 ms switch interval a
        # request could wait that long for the GIL. 1 ms keeps the event loop's waits short.
        sys.setswitchinterval(0.001)
        writer = LogWriter(self.settings, self.store, self.upstreams)
        self.spans = SpanExporter.feeding_on(writer, self.upstreams)
        return writer

    async def stop(self) -> None:
        self.ready = False
        if self._key_use_task is not None:
            self._key_use_task.cancel()
            await asyncio.gather(self._key_use_task, return_exceptions=True)
            await self._flush_key_use()
        if self.recorder is not None:
            await self.recorder.stop()  # hands over (or drains) every record before the process exits
        if self.spans is not None:
            await self.spans.stop()
        await self.upstreams.close()
        if self.gateway is not None and self.gateway.redis is not None:
            await self.gateway.redis.aio.aclose()
        if self.log_store is not None:
            self.log_store.close()
        if self.store is not None:
            self.store.close()


def create_app() -> ModelPortApp:
    """Factory for running under another ASGI server: settings come from the environment."""
    return ModelPortApp(Settings.load())
