"""``ControlPlane``: the ASGI callable behind ``/v1/<control resource>`` and ``/openapi.json``.

One request: match the route → authenticate the gateway key for the route's scope → check query and
body against the route's shapes → run the handler in a worker thread → reply JSON. Handlers are plain
synchronous functions of ``(store, request)`` (the log store rides on the request); they run off the
event loop because a store write may wait on SQLite's write lock (``busy_timeout``), and the inference
hot path shares this loop. A store that cannot answer (``StoreUnavailable``) is a 503 the caller may retry.

Errors are the gateway's (``{"error": {"message", "type", "code"}}`` with
``x-portkey-gateway-exception: true``). No request body is ever logged or put into an error message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ..gateway.auth import Authenticator, Principal
from ..errors import Conflict, GatewayError, NotFound, StoreBusy, Unauthorized
from ..gateway.headers import parse_request_options
from ..hosts import HostRules
from ..gateway.limits import Limiter
from ..asgi import JSON, ClientDisconnected, Receive, Scope, Send, read_body, send_error, send_json, send_response
from ..settings import Settings
from ..store import Conflict as StoreConflict
from ..store import LogStore, Store, StoreUnavailable
from ..store import NotFound as StoreNotFound
from . import configs, keys, logs, predictions, providers
from .download import Download
from .openapi import openapi_document
from .router import Request, Route, Router
from .schema import Invalid

log = logging.getLogger("modelport.control")

ROUTES: tuple[Route, ...] = (
    *keys.ROUTES,
    *providers.ROUTES,
    *configs.ROUTES,
    *predictions.ROUTES,  # before logs: /logs/{log_id} would take /logs/predictions
    *logs.ROUTES,
)
# The first path segments under /v1 that are the control plane's ("api-keys", "logs", ...), read off the
# table: server/app.py dispatches these here and everything else under /v1 to the gateway.
RESOURCES = frozenset(route.path.split("/", 2)[1] for route in ROUTES)

MAX_BODY_BYTES = 1024 * 1024  # admin bodies are small; a config with many targets is a few KB


class ControlPlane:
    def __init__(self, store: Store, log_store: LogStore, settings: Settings, authenticator: Authenticator,
                 limiter: Limiter, routes: tuple[Route, ...] = ROUTES) -> None:  # fmt: skip
        self.store = store
        self.log_store = log_store
        self.limiter = limiter
        self.settings = settings
        self.auth = authenticator
        self.host_rules = HostRules.from_settings(settings)
        self.router = Router(routes)
        self.document = orjson.dumps(openapi_document(self.router.routes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/openapi.json":
            await send_response(send, 200, [(b"content-type", JSON)], self.document)
            return
        trace_id = ""
        try:
            options = parse_request_options(scope["headers"])
            trace_id = options.trace_id
            route, params = self.router.match(scope["method"], scope["path"][len("/v1"):])
            principal = self._principal(options.api_key, route)
            request = Request(principal, params, _query(route, scope), await _body(route, receive), self.limiter,
                              self.host_rules, self.log_store)
            reply = await asyncio.to_thread(self._run, route, request)
            headers = [(b"x-portkey-trace-id", trace_id.encode("latin-1"))]
            if isinstance(reply, Download):
                await reply.send_to(send, headers)  # streamed (log exports): never held whole in memory
            else:
                await send_json(send, 200, reply, headers)
        except GatewayError as error:
            await send_error(send, error, trace_id or error.trace_id)
        except ClientDisconnected:
            return
        except Exception:
            log.exception("control plane: %s %s failed", scope["method"], scope["path"])
            await send_error(send, GatewayError("the control plane failed unexpectedly; see the gateway log"), trace_id)

    def _principal(self, token: str | None, route: Route) -> Principal:
        # Unlike inference, the control plane never runs keyless, even when require_api_key is off.
        if not token:
            raise Unauthorized(f"the control plane needs a gateway API key with the '{route.scope}' scope "
                               "(x-portkey-api-key, or Authorization: Bearer mp-...)")  # fmt: skip
        return self.auth.authenticate(token, route.scope, route.own_scope)

    def _run(self, route: Route, request: Request) -> Any:
        try:
            return route.handler(self.store, request)
        except StoreNotFound as exc:
            raise NotFound(str(exc)) from None
        except StoreConflict as exc:
            raise Conflict(str(exc)) from None
        except StoreUnavailable as exc:
            raise StoreBusy(f"the store cannot answer now ({exc}); try again shortly") from None
        except ValueError as exc:  # the store's own checks; our shapes catch nearly everything first
            raise Invalid(str(exc)) from None


def _query(route: Route, scope: Scope) -> dict[str, Any]:
    if route.query is None:
        return {}
    raw = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    return route.query.parse_query(raw)


async def _body(route: Route, receive: Receive) -> dict[str, Any]:
    if route.body is None:
        return {}
    raw = await read_body(receive, MAX_BODY_BYTES)
    if not raw.strip():
        return route.body.parse_body({})
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Invalid("the request body is not valid JSON", code="invalid_json") from None
    return route.body.parse_body(parsed)
