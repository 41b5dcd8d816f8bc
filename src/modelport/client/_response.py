"""What a call returns: ``Response`` for any body, ``APIObject`` for attribute access to JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from ._headers import HEADER_PREFIX

_UNREAD = object()


class Response:
    """A complete (non-streamed) HTTP response, whatever its body.

    JSON objects, JSON arrays, text and empty bodies are all returned as they came; Portkey's SDK
    crashes on the last three (research/portkey.md §5.2). Fields of a JSON body are reachable as
    ``response["id"]`` or ``response.id``; a field sharing its name with an attribute below
    (``text``, ``headers``, ``content``...) needs the ``[...]`` form.
    """

    def __init__(self, http_response: httpx.Response) -> None:
        self.http_response = http_response
        self._json: Any = _UNREAD

    @property
    def status_code(self) -> int:
        return self.http_response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.http_response.headers

    @property
    def content(self) -> bytes:
        return self.http_response.content

    @property
    def text(self) -> str:
        return self.http_response.text

    def json(self) -> Any:
        """The parsed body; ``None`` for an empty one; ``ValueError`` if it is not JSON."""
        if self._json is _UNREAD:
            self._json = json.loads(self.content) if self.content.strip() else None
        return self._json

    @property
    def trace_id(self) -> str | None:
        return self.headers.get(HEADER_PREFIX + "trace-id") or None

    def portkey_headers(self) -> dict[str, str]:
        """The ``x-portkey-*`` response headers, prefix removed: ``{"trace-id": ..., ...}``."""
        return portkey_headers(self.headers)

    def __getitem__(self, key: Any) -> Any:
        return self.json()[key]

    def __contains__(self, key: object) -> bool:
        try:
            return key in self.json()
        except (ValueError, TypeError):
            return False

    def get(self, key: str, default: Any = None) -> Any:
        body = self.json()
        return body.get(key, default) if isinstance(body, dict) else default

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            body = self.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and name in body:
            return wrap(body[name])
        raise AttributeError(f"response has no attribute or JSON field {name!r}")

    def __repr__(self) -> str:
        return f"<Response {self.status_code} {self.headers.get('content-type', '')}>"


class APIObject:
    """A JSON object with attribute access: ``completion.choices[0].message.content``.

    It has no public methods besides ``to_dict`` so that any field name, ``get`` included
    (Replicate's ``urls.get``), reads as the field. A field the JSON lacks reads as ``None``, as
    an unset optional field does in the OpenAI SDK: providers omit them freely (the last chunk
    of a stream has ``delta: {}``) and ``chunk.choices[0].delta.content or ""`` must keep working.
    ``"field" in obj`` tells absent from null.
    """

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)  # keeps copy, pickle and protocol checks honest
        return wrap(self._data.get(name))

    def __getitem__(self, key: str) -> Any:
        return wrap(self._data[key])

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, APIObject):
            return self._data == other._data
        return self._data == other

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dict it wraps

    def __repr__(self) -> str:
        return f"APIObject({self._data!r})"

    def to_dict(self) -> dict[str, Any]:
        """The underlying JSON object (not a copy)."""
        return self._data


def wrap(value: Any) -> Any:
    """JSON value → the same value with every object inside it made an ``APIObject``."""
    if isinstance(value, dict):
        return APIObject(value)
    if isinstance(value, list):
        return [wrap(item) for item in value]
    return value


def portkey_headers(headers: httpx.Headers) -> dict[str, str]:
    return {
        name[len(HEADER_PREFIX) :]: value for name, value in headers.items() if name.lower().startswith(HEADER_PREFIX)
    }
