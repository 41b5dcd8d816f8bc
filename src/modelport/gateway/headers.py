"""``x-portkey-*`` request headers → ``RequestOptions``, in one pass over the ASGI header list.

Names and formats follow Portkey's gateway (research/portkey.md §1.1): metadata and config are JSON,
forward-headers is comma-separated, request-timeout is in milliseconds, cache-force-refresh is
presence-only unless explicitly "false" (Portkey treats even "false" as on; we honour the word).
"""

from __future__ import annotations

import re

from types import MappingProxyType
from typing import Any, Mapping, NamedTuple

import orjson

from ..ids import new_time_ordered_id
from ..providers.registry import setting_headers
from ..errors import InvalidHeader, quoted

PREFIX = b"x-portkey-"
GATEWAY_KEY_PREFIX = "mp-"

# Client headers that never reach an upstream (RFC 9110 §7.6.1 hop-by-hop, plus what the client
# library recomputes). ``x-portkey-*`` are dropped by prefix.
HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
        b"trailers", b"transfer-encoding", b"upgrade", b"host", b"content-length", b"expect",
    }
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})

# Metadata bounds (docs/bounds.md). Every log record stores its request's metadata, and a value the log
# store cannot encode (orjson refuses more than 254 levels) once stopped the log writer for good, so
# metadata is bounded at the door. Portkey caps string values at 128 characters and sets no key count;
# these take any value Portkey takes, with room for nested tags and long ids, in up to 64 keys.
METADATA_MAX_BYTES = 8 * 1024  # the JSON text
METADATA_MAX_DEPTH = 8  # the outer object is level 1
METADATA_MAX_KEYS = 64  # keys of every object in it, together
METADATA_MAX_KEY_CHARS = 128
METADATA_MAX_VALUE_CHARS = 1024

MAX_TRACE_ID = 256

# A request timeout (header or config) is at most a day: nan, inf and 1e309 parse as floats, and the
# event loop's timers refuse what they cannot schedule (a 500 before).
MAX_TIMEOUT_MS = 24 * 3600 * 1000

# Provider-specific x-portkey-* headers that become target settings: each provider's declared ``Setting``
# with a ``header`` (providers/registry.py), e.g. x-portkey-azure-resource-name → resource_name.
_PROVIDER_SETTINGS = setting_headers()


class RequestOptions(NamedTuple):
    """What the caller asked of the gateway, parsed and validated; upstream headers kept raw.

    Immutable. A NamedTuple rather than a frozen dataclass: it is built on every request, and a frozen
    dataclass sets each of its fields through object.__setattr__ (measured 10 µs → see bench/README)."""

    api_key: str | None = None
    provider: str | None = None
    virtual_key: str | None = None
    config: str | None = None
    trace_id: str = ""
    trace_id_given: bool = False
    metadata: Mapping[str, Any] = _EMPTY
    custom_host: str | None = None
    forward_headers: frozenset[bytes] = frozenset()
    request_timeout: float | None = None
    cache_force_refresh: bool = False
    strict_compliance: bool = False
    provider_key: str | None = None
    provider_settings: Mapping[str, str] = _EMPTY
    upstream_headers: tuple[tuple[bytes, bytes], ...] = ()
    content_type: bytes = b""
    content_length: int | None = None
    cache_namespace: str | None = None  # partitions the cache further (never across gateway keys)
    cache_ttl: float | None = None  # seconds; turns the simple cache on for this request
    span: tuple[str | None, str | None, str | None] = (None, None, None)  # span id, parent span id, span name


# Builds a RequestOptions from a full positional tuple, skipping the keyword handling of __new__.
_FAST_NEW = tuple.__new__


def new_trace_id() -> str:
    return new_time_ordered_id()  # indexed in the logs: see there


def parse_request_options(raw_headers: list[tuple[bytes, bytes]]) -> RequestOptions:
    """Split the header list into gateway options and the headers that may go upstream. A malformed
    header raises ``InvalidHeader`` carrying the request's trace id, so the error response and its log
    record keep the caller's."""
    try:
        return _parse(raw_headers)
    except InvalidHeader as error:
        error.trace_id = _given_trace_id(raw_headers) or new_trace_id()
        raise


def _given_trace_id(raw_headers: list[tuple[bytes, bytes]]) -> str:
    given = next((value.decode("latin-1") for name, value in raw_headers if name == b"x-portkey-trace-id"), "")
    return given if _trace_id_fits(given) else ""


def _trace_id_fits(trace_id: str) -> bool:
    # Every log record stores and indexes its trace id, and every response repeats it.
    return len(trace_id) <= MAX_TRACE_ID and trace_id.isprintable()


def _parse(raw_headers: list[tuple[bytes, bytes]]) -> RequestOptions:
    portkey: dict[str, str] = {}
    upstream: list[tuple[bytes, bytes]] = []
    authorization = None
    x_api_key = None
    content_type = b""
    content_length = None
    traceparent = None
    for name, value in raw_headers:
        if name.startswith(PREFIX):
            portkey[name[len(PREFIX):].decode("latin-1")] = value.decode("latin-1")
            continue
        if name == b"authorization":
            authorization = value.decode("latin-1")
            if _bearer(authorization) is not None:
                continue  # a Bearer token is either the gateway key or a provider key re-injected last

        if name == b"x-api-key" and value.startswith(GATEWAY_KEY_PREFIX.encode()):
            x_api_key = value.decode("latin-1")  # the Anthropic SDK sends its api_key here: the gateway key
            continue
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            content_length = _content_length(value)
        elif name == b"traceparent":
            traceparent = value
        if name not in HOP_BY_HOP:
            upstream.append((name, value))
    if x_api_key and "api-key" not in portkey:
        portkey["api-key"] = x_api_key
    if traceparent is not None:
        _adopt_traceparent(portkey, traceparent)
    return _options(portkey, authorization, upstream, content_type, content_length)


# W3C Trace Context: version-traceid-parentid-flags, lower-case hex (https://www.w3.org/TR/trace-context/).
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?")


def _adopt_traceparent(portkey: dict[str, str], value: bytes) -> None:
    """A caller's W3C ``traceparent`` names the trace and the parent span where Portkey's own headers do
    not (``x-portkey-trace-id`` and ``x-portkey-parent-span-id`` win). One that is malformed is ignored,
    as the W3C spec asks of a receiver: the request starts a trace of its own."""
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None or match[1] == b"ff" or (match[1] == b"00" and match.end(4) != len(value.strip())):
        return
    trace_id, parent_id = match[2].decode(), match[3].decode()
    if trace_id.strip("0") and parent_id.strip("0"):
        portkey.setdefault("trace-id", trace_id)
        portkey.setdefault("parent-span-id", parent_id)


def _options(
    portkey: dict[str, str],
    authorization: str | None,
    upstream: list[tuple[bytes, bytes]],
    content_type: bytes,
    content_length: int | None,
) -> RequestOptions:
    api_key = portkey.pop("api-key", None) or None
    bearer = _bearer(authorization)
    provider_key = bearer
    if bearer and bearer.startswith(GATEWAY_KEY_PREFIX) and api_key is None:
        # The OpenAI SDK pointed at the gateway sends the gateway key as its api_key.
        api_key, provider_key = bearer, None
    elif bearer and bearer == api_key:
        provider_key = None
    provider = portkey.pop("provider", None) or None
    trace_id = portkey.pop("trace-id", None)
    if trace_id and not _trace_id_fits(trace_id):
        raise InvalidHeader(f"x-portkey-trace-id must be at most {MAX_TRACE_ID} printable characters")
    common = (api_key, provider, portkey.pop("virtual-key", None) or None)
    if not portkey:  # only the common headers: every other option keeps its default (most requests)
        return _FAST_NEW(RequestOptions, (*common, None, trace_id or new_trace_id(), bool(trace_id), _EMPTY, None,
                                          frozenset(), None, False, False, provider_key, _EMPTY, tuple(upstream),
                                          content_type, content_length, None, None, (None, None, None)))
    return RequestOptions(
        *common,
        config=portkey.get("config") or None,
        trace_id=trace_id or new_trace_id(),
        trace_id_given=bool(trace_id),
        metadata=_metadata(portkey.get("metadata")) if "metadata" in portkey else _EMPTY,
        custom_host=portkey.get("custom-host") or None,
        forward_headers=_forward_headers(portkey.get("forward-headers")),
        request_timeout=_timeout(portkey.get("request-timeout")),
        cache_force_refresh=_flag(portkey.get("cache-force-refresh")),
        strict_compliance=(portkey.get("strict-open-ai-compliance", "").lower() == "true"),
        provider_key=provider_key,
        provider_settings=_provider_settings(portkey),
        upstream_headers=tuple(upstream),
        content_type=content_type,
        content_length=content_length,
        cache_namespace=_namespace(portkey.get("cache-namespace")),
        cache_ttl=_cache_ttl(portkey.get("cache-ttl")),
        span=(_span(portkey, "span-id"), _span(portkey, "parent-span-id"), _span(portkey, "span-name")),
    )


def _provider_settings(portkey: dict[str, str]) -> Mapping[str, str]:
    found = {key: portkey[h] for h, key in _PROVIDER_SETTINGS.items() if portkey.get(h)}
    return found or _EMPTY


def _bearer(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def _content_length(value: bytes) -> int:
    try:
        length = int(value)
    except ValueError:
        raise InvalidHeader("content-length must be a non-negative integer") from None
    if length < 0:
        raise InvalidHeader("content-length must be a non-negative integer")
    return length


def _metadata(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    if len(raw) > METADATA_MAX_BYTES:
        raise InvalidHeader(f"x-portkey-metadata is {len(raw):,} bytes; at most {METADATA_MAX_BYTES:,} are accepted")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidHeader("x-portkey-metadata must be a JSON object, e.g. {\"user\": \"alice\"}") from None
    problem = metadata_problem(value)
    if problem is not None:
        raise InvalidHeader(f"x-portkey-metadata {problem}")
    return value


def metadata_problem(value: Any) -> str | None:
    """Why ``value`` is not metadata the log store can hold (None if it is), worded to follow the
    field's name: every record carries its metadata, so it is bounded like the rest of a record."""
    if not isinstance(value, dict):
        return "must be a JSON object, e.g. {\"user\": \"alice\"}"
    keys = [0]  # a counter the walk shares
    return _bounds_problem(value, 1, keys)


def _bounds_problem(value: Any, depth: int, keys: list[int]) -> str | None:
    if isinstance(value, str):
        if len(value) > METADATA_MAX_VALUE_CHARS:
            return f"has a value of {len(value):,} characters; at most {METADATA_MAX_VALUE_CHARS:,} are accepted"
        return None
    if not isinstance(value, (dict, list)):
        return None
    if depth > METADATA_MAX_DEPTH:
        return f"nests deeper than {METADATA_MAX_DEPTH} levels of objects and lists"
    if isinstance(value, dict):
        keys[0] += len(value)
        if keys[0] > METADATA_MAX_KEYS:
            return f"has more than {METADATA_MAX_KEYS} keys (counting nested objects)"
        long_key = next((key for key in value if len(key) > METADATA_MAX_KEY_CHARS), None)
        if long_key is not None:
            return f"has a key of {len(long_key):,} characters; at most {METADATA_MAX_KEY_CHARS} are accepted"
        value = value.values()
    for item in value:
        problem = _bounds_problem(item, depth + 1, keys)
        if problem is not None:
            return problem
    return None


def _forward_headers(raw: str | None) -> frozenset[bytes]:
    if not raw:
        return frozenset()
    names = frozenset(part.strip().lower().encode("latin-1") for part in raw.split(",") if part.strip())
    if b"x-portkey-forward-headers" in names:
        raise InvalidHeader("x-portkey-forward-headers cannot name itself")
    return names


def _timeout(raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        ms = float(raw)
    except ValueError:
        raise InvalidHeader(f"x-portkey-request-timeout must be a number of milliseconds, got {quoted(raw)}") from None
    if not 0 < ms <= MAX_TIMEOUT_MS:  # also false for nan; inf and 1e309 are over the limit
        raise InvalidHeader(f"x-portkey-request-timeout must be a positive number of milliseconds, at most "
                            f"{MAX_TIMEOUT_MS:,} (a day), got {quoted(raw)}")
    return ms / 1000.0


def _span(portkey: dict[str, str], name: str) -> str | None:
    value = portkey.get(name)
    if not value:
        return None
    if len(value) > 128 or not value.isprintable():
        raise InvalidHeader(f"x-portkey-{name} must be at most 128 printable characters")
    return value


def _namespace(raw: str | None) -> str | None:
    if not raw:
        return None
    if len(raw) > 256:
        raise InvalidHeader("x-portkey-cache-namespace must be at most 256 characters")
    return raw


def _cache_ttl(raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        seconds = float(raw)
    except ValueError:
        raise InvalidHeader(f"x-portkey-cache-ttl must be a number of seconds, got {raw!r}") from None
    if not 0 < seconds <= 31_536_000:  # also refuses nan and inf
        raise InvalidHeader(f"x-portkey-cache-ttl must be between 0 and 31536000 seconds, got {raw!r}")
    return seconds


def _flag(raw: str | None) -> bool:
    return raw is not None and raw.strip().lower() not in ("false", "0", "no")
