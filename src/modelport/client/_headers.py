"""Turn ModelPort options into the Portkey wire headers.

``create_headers`` follows the rules of Portkey's Python ``createHeaders``
(portkey_ai/api_resources/apis/create_headers.py, research/portkey.md §5.3), so its output can be
handed to any OpenAI-compatible SDK as ``default_headers``. Deliberate differences:

- camelCase names work too (``traceID`` → ``x-portkey-trace-id``), as in Portkey's Node SDK;
- a list value other than ``forward_headers`` is sent as JSON, not as a Python ``repr`` (the
  guardrail headers expect JSON arrays);
- ``x-portkey-forward-headers`` lists the names as sent (``X_Tenant`` → ``X-Tenant``); Portkey's
  lists ``X_Tenant``, a header the gateway then cannot find.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

HEADER_PREFIX = "x-portkey-"

_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def create_headers(**options: Any) -> dict[str, str]:
    """Headers for a request through a Portkey-compatible gateway.

    ``create_headers(api_key="mp-…", provider="@replicate-prod", trace_id="run-7")`` gives
    ``{"x-portkey-api-key": …, "x-portkey-provider": …, "x-portkey-trace-id": …}``.

    - booleans become ``"true"``/``"false"`` (so ``False`` is still sent);
    - a mapping (or list) becomes JSON;
    - falsy values (``None``, ``""``, ``0``, empty containers) are dropped;
    - ``authorization`` becomes ``Authorization: Bearer …`` (``Bearer`` added when missing);
    - a name listed in ``forward_headers`` is written raw, any other as ``x-portkey-<name>``;
    - ``forward_headers`` itself is sent comma-joined.
    """
    forward_key = next((key for key in options if header_name(key).lower() == "forward-headers"), None)
    forwarded = _forward_header_names(options.pop(forward_key)) if forward_key else []
    raw_names = {name.lower() for name in forwarded}
    headers: dict[str, str] = {}
    for key, value in options.items():
        name = header_name(key)
        text = _header_value(value)
        if not text:
            continue
        if name.lower() == "authorization":
            headers["Authorization"] = text if text.startswith("Bearer ") else f"Bearer {text}"
        elif name.lower() in raw_names:
            headers[name] = text
        else:
            headers[HEADER_PREFIX + name] = text
    if forwarded:
        headers[HEADER_PREFIX + "forward-headers"] = ",".join(forwarded)
    return headers


createHeaders = create_headers  # the name Portkey's docs and Node SDK use


def header_name(key: str) -> str:
    """``trace_id`` / ``traceID`` / ``traceId`` → ``trace-id``; ``X_Custom`` → ``X-Custom``."""
    if "_" in key:
        return key.replace("_", "-")
    # Portkey's Node createHeaders turns "ID" into "Id" first, so traceID is not trace-i-d.
    camel = key.replace("ID", "Id")
    return _CAMEL_HUMP.sub("-", camel).lower() if _CAMEL_HUMP.search(camel) else key


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if not value:
        return ""
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(dict(value) if isinstance(value, Mapping) else list(value))
    return str(value)


def _forward_header_names(value: Any) -> list[str]:
    """``["X_Trace", "baggage"]`` or ``"X-Trace,baggage"`` → ``["X-Trace", "baggage"]``."""
    if not value:
        return []
    names = value.split(",") if isinstance(value, str) else list(value)
    return [name.strip().replace("_", "-") for name in names if name.strip()]
