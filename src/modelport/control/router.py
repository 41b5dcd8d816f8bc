"""The control plane's route table: (method, path pattern) → handler, with the scope each route needs.

A route is data: its pattern, the gateway-key scope it requires, the body and query shapes it accepts
(``schema.Shape``), the JSON Schema of its reply and a one-line summary. The dispatcher (``app.py``)
and the OpenAPI document (``openapi.py``) both read this table, so neither can drift from the other.
Each resource module exports ``ROUTES``; adding a resource is one line in ``app.ROUTES``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..gateway.auth import Principal
from ..errors import MethodNotAllowed, NotFound
from ..hosts import HostRules
from ..gateway.limits import Limiter
from ..store import LogStore
from .schema import Shape


@dataclass(frozen=True, slots=True)
class Request:
    """What a handler gets: the caller, the path parameters, and the checked query and body."""

    principal: Principal
    params: dict[str, str]
    query: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    limiter: Limiter | None = None  # reads the node's rate-limit counters, for usage in replies
    host_rules: HostRules = HostRules()  # the operator's SSRF rules, for hosts stored providers may name
    log_store: LogStore | None = None  # logs, feedback and predictions, for their routes


Handler = Callable[[Any, Request], Any]  # (store, request) -> JSON-ready reply


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # relative to /v1, e.g. "/virtual-keys/{slug}"
    scope: str  # the gateway-key scope required; "admin" implies every scope
    handler: Handler
    summary: str
    tag: str
    response: dict[str, Any]  # JSON Schema of the 200 reply
    body: Shape | None = None
    query: Shape | None = None
    # A scope that also admits the caller, to its own records only; the handler enforces "own" (feedback:
    # a key that may make requests may rate the requests it made, as Portkey's inference key may).
    own_scope: str | None = None

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)


class Router:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._compiled = [(route, _compile(route.path)) for route in self.routes]
        seen = set()
        for route in self.routes:
            if (route.method, route.path) in seen:
                raise ValueError(f"duplicate route {route.method} {route.path}")
            seen.add((route.method, route.path))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for ``path`` (relative to /v1); earlier routes win, so list literal paths first."""
        path = path.rstrip("/") or "/"
        allowed = []
        for route, pattern in self._compiled:
            found = pattern.fullmatch(path)
            if found is None:
                continue
            if route.method == method:
                return route, found.groupdict()
            allowed.append(route.method)
        if allowed:
            methods = ", ".join(dict.fromkeys(allowed))
            raise MethodNotAllowed(f"{method} is not allowed on /v1{path}; use {methods}", headers={"allow": methods})
        raise NotFound(f"no control-plane route for /v1{path} (the API is described at /openapi.json)")


def _compile(path: str) -> re.Pattern[str]:
    # A parameter is one path segment; slugs and ids never contain '/'.
    parts = re.split(r"({\w+})", path)
    return re.compile("".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts))
