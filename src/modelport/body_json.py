"""A held request body's JSON, decoded at most once per request, and only when a step asks.

Many steps read the client's JSON body: conditional and sticky routing, the ``@slug/model`` route, a
stored provider's model allow-list, the unified translation, the cache key, a budget's reservation and
a provider's policy (Replicate's webhook relay and input-file check). Each asks the request's one
``BodyJson`` (gateway/forward.py ``Outbound.json``, providers/base.py ``Exchange.body_json``), so the body
is decoded at most once whatever the route, and not at all when no step asks (an OpenAI-compatible
chat passes through unread: decoding a large prompt costs 5-20 µs). The decoded value is shared, so a
reader copies it before changing it.
"""

from __future__ import annotations

from typing import Any

import orjson

_UNREAD = object()


class BodyJson:
    __slots__ = ("raw", "_value", "_error")

    def __init__(self, raw: bytes | None) -> None:
        self.raw = raw  # None: the body streamed through unread (over the gateway's buffer limit)
        self._value: Any = _UNREAD
        self._error: str | None = None

    def value(self) -> Any:
        """The decoded body; ``ValueError`` with the decoder's reason when it is not JSON or not held."""
        if self._value is _UNREAD:
            self._decode()
        if self._error is not None:
            raise ValueError(self._error)
        return self._value

    def or_none(self) -> Any:
        """The decoded body, or None when it is not JSON or not held."""
        if self._value is _UNREAD:
            self._decode()
        return self._value

    def fields(self) -> dict[str, Any]:
        """The body as a JSON object; an empty dict when it is none (no body, not JSON, an array)."""
        if not self.raw:
            return {}
        value = self.or_none()
        return value if isinstance(value, dict) else {}

    def _decode(self) -> None:
        if self.raw is None:
            self._value, self._error = None, "the body streamed through unread (over the gateway's 4 MiB buffer)"
            return
        try:
            self._value = orjson.loads(self.raw)
        except orjson.JSONDecodeError as exc:
            self._value, self._error = None, str(exc)
