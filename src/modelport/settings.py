"""Every setting of ModelPort, in one typed object. The only module that reads the environment.

Precedence: command-line flag > ``MODELPORT_<NAME>`` environment variable > config file > default.
The config file (TOML, ``--config`` / ``MODELPORT_CONFIG``, else ``<data_dir>/modelport.toml`` if
present) holds any field below by name at top level, plus ``[[providers]]`` tables that declare stored
provider credentials (``slug``, ``provider``, ``secret_env``, optional ``custom_host``, ``settings``).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class DeclaredProvider:
    """A stored provider declared in the config file; its secret comes from an environment variable."""

    slug: str
    provider: str
    secret_env: str | None = None
    custom_host: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8787
    workers: int = 1
    data_dir: Path = Path(".modelport")
    log_level: str = "info"
    config: Path | None = None
    public_url: str | None = None
    admin_key: str | None = None
    master_key: str | None = None
    signing_secret: str | None = None
    require_api_key: bool = True
    allow_private_hosts: bool = False
    trusted_hosts: tuple[str, ...] = ()
    max_body_bytes: int = 256 * 1024 * 1024
    # Cloudflare's limit for a request's headers, in front of Portkey's hosted gateway: what Portkey's
    # clients send fits. Apache's LimitRequestFields default is 100.
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    # nginx waits 60 s for a head and between body reads; a head is small, so less for it here.
    header_timeout: float = 20.0
    body_timeout: float = 60.0
    upstream_timeout: float = 600.0
    connect_timeout: float = 10.0
    stream_url_ttl: int = 6 * 3600
    logging: bool = True
    log_bodies: bool = True
    log_body_max_bytes: int = 64 * 1024
    log_redact_paths: tuple[str, ...] = ()
    log_queue_size: int = 10_000
    log_retention_days: int = 0
    responses_retention_days: int = 30  # OpenAI keeps a stored response 30 days
    pricing_file: Path | None = None
    replicate_pricing_file: Path | None = None
    replicate_default_hardware: str = "gpu-a40-large"
    replicate_autopoll: bool = False
    replicate_autopoll_interval: float = 5.0
    replicate_isolate_predictions: bool = True
    cache_max_bytes: int = 64 * 1024 * 1024
    cache_share_across_keys: bool = False
    budget_max_tokens: int = 4096
    budget_admit_unpriced: bool = False
    otel_endpoint: str | None = None
    otel_headers: tuple[str, ...] = field(default=(), repr=False)  # usually a credential
    otel_service_name: str = "modelport"
    # The SDKs queue 2,048 spans for 5 s of an application's traffic; a gateway at 10,000 requests/s
    # emits 20,000+ spans/s. 8,192 encoded spans are ~5 MB.
    otel_queue_size: int = 8192
    database_url: str | None = None
    redis_url: str | None = None
    redis_key_prefix: str = "modelport:"
    redis_timeout: float = 0.25
    limits_fail_open: bool = False
    providers: tuple[DeclaredProvider, ...] = ()
    # Internal, set by `modelport serve` for its workers: where the log service listens. Empty (an app
    # from create_app() under another ASGI server) means logging in-process. Read from no flag, variable
    # or file.
    log_service_address: str = ""

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from flags (``overrides``, None values ignored), environment and config file."""
        environ = os.environ if environ is None else environ
        flags = {k: v for k, v in (overrides or {}).items() if v is not None}
        env = _from_environ(environ)
        merged: dict[str, Any] = {}
        config_path = flags.get("config") or env.get("config")
        data_dir = Path(flags.get("data_dir") or env.get("data_dir") or _DEFAULTS["data_dir"])
        if config_path is None and (data_dir / "modelport.toml").is_file():
            config_path = data_dir / "modelport.toml"
        if config_path is not None:
            merged.update(_from_file(Path(config_path)))
            merged["config"] = Path(config_path)
        merged.update(env)
        merged.update(flags)
        return cls(**{name: _coerce(name, value) for name, value in merged.items()}).validated()

    def validated(self) -> "Settings":
        if not 0 < self.port < 65536:
            raise SettingsError(f"port must be between 1 and 65535, got {self.port}")
        if self.workers < 1:
            raise SettingsError(f"workers must be at least 1, got {self.workers}")
        for name in ("max_body_bytes", "max_header_bytes", "max_headers"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.log_retention_days < 0:
            raise SettingsError(f"log_retention_days must be 0 (keep forever) or a number of days, got {self.log_retention_days}")
        if self.responses_retention_days < 1:
            raise SettingsError("responses_retention_days must be a number of days of at least 1 (store: false keeps a "
                                f"response out of the store), got {self.responses_retention_days}")
        for name in ("header_timeout", "body_timeout"):
            if not 0 < getattr(self, name) < float("inf"):
                raise SettingsError(f"{name} must be a positive number of seconds, got {getattr(self, name)}")
        if self.public_url and not _PUBLIC_URL.fullmatch(self.public_url):
            raise SettingsError("public_url must start with http:// or https:// and hold only URL characters (no "
                                "spaces, quotes or backslashes), e.g. https://gateway.example.com")
        _check_trusted_hosts(self.trusted_hosts)
        _check_otel(self)
        if self.database_url:
            _check_shared_database(self)
        if self.signing_secret is not None and len(self.signing_secret) < 32:
            raise SettingsError("signing_secret must be at least 32 characters (e.g. the output of "
                                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        if not 0 < self.redis_timeout <= 10:
            raise SettingsError(f"redis_timeout must be between 0 and 10 seconds, got {self.redis_timeout}")
        if self.redis_url is not None and not _REDIS_URL.fullmatch(self.redis_url):
            raise SettingsError("redis_url (MODELPORT_REDIS_URL) must be redis://[user:password@]host[:port][/db] or "
                                "rediss://... for TLS, e.g. redis://127.0.0.1:6379/0")
        return self

    def with_changes(self, **changes: Any) -> "Settings":
        return replace(self, **changes)


def _check_shared_database(settings: "Settings") -> None:
    """Nodes sharing a database must seal, sign and verify alike, so none may make its own secrets. The URL
    itself is checked as libpq reads it where it is opened (``store/pg_connect.py``): the floor imports no
    driver."""
    if not settings.database_url.startswith(("postgresql://", "postgres://")):
        raise SettingsError("database_url is malformed: it must start with postgresql:// (or postgres://)")
    missing = [f"{_ENV_PREFIX}{name.upper()}" for name in ("master_key", "signing_secret") if not getattr(settings, name)]
    if missing:
        raise SettingsError(f"database_url is set, so {' and '.join(missing)} must be too, the same on every node: nodes "
                            "sharing a database must open each other's sealed secrets and signed links, so no node "
                            "may generate its own (docs/deployment.md says how to make them)")


def _check_trusted_hosts(entries: tuple[str, ...]) -> None:
    from .hosts import HostRules  # the one parser of host rules (imported when trusted_hosts is set)

    try:
        HostRules.build(False, entries)
    except ValueError as exc:
        raise SettingsError(f"trusted_hosts ({_ENV_PREFIX}TRUSTED_HOSTS): {exc}") from None


def _check_otel(settings: "Settings") -> None:
    endpoint = settings.otel_endpoint
    if endpoint is None:
        for name in ("otel_headers", "otel_service_name", "otel_queue_size"):
            if getattr(settings, name) != _DEFAULTS[name]:  # accepted but never used would read as working
                raise SettingsError(f"{name} ({_ENV_PREFIX}{name.upper()}) applies only with otel_endpoint "
                                    f"({_ENV_PREFIX}OTEL_ENDPOINT) set; set it or unset {name}")
        return
    if not _OTEL_ENDPOINT.fullmatch(endpoint):
        raise SettingsError(f"otel_endpoint ({_ENV_PREFIX}OTEL_ENDPOINT) must be the collector's OTLP/HTTP base URL, "
                            f"e.g. http://collector:4318, got {endpoint!r}")
    if endpoint.rstrip("/").endswith("/v1/traces"):
        raise SettingsError(f"otel_endpoint ({_ENV_PREFIX}OTEL_ENDPOINT) is the base URL: traces go to "
                            f"<endpoint>/v1/traces, so leave /v1/traces off ({endpoint!r})")
    if not settings.otel_service_name.strip() or not settings.otel_service_name.isprintable():
        raise SettingsError(f"otel_service_name ({_ENV_PREFIX}OTEL_SERVICE_NAME) must be printable and not empty")
    if settings.otel_queue_size < 1:
        raise SettingsError(f"otel_queue_size ({_ENV_PREFIX}OTEL_QUEUE_SIZE) must be at least 1, got {settings.otel_queue_size}")
    otel_header_pairs(settings.otel_headers)


def otel_header_pairs(entries: tuple[str, ...]) -> dict[str, str]:
    """``name=value`` entries (values percent-decoded, as OTEL_EXPORTER_OTLP_HEADERS writes them) → headers.
    The message names the entry's position, never its value: these are usually credentials."""
    headers = {}
    for position, entry in enumerate(entries, 1):
        name, equals, value = entry.partition("=")
        name, value = name.strip(), unquote(value.strip())
        if not equals or not _HEADER_NAME.fullmatch(name) or not value or not value.isprintable():
            raise SettingsError(f"otel_headers ({_ENV_PREFIX}OTEL_HEADERS) entry {position} must be name=value with a "
                                "header name and a printable value (percent-encode commas), e.g. authorization=Bearer%20abc")
        headers[name.lower()] = value
    return headers


_OTEL_ENDPOINT = re.compile(r"https?://[A-Za-z0-9._~\[\]:-]+(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token
# Written into response bodies and Location headers: nothing that could end a JSON string or a header.
_PUBLIC_URL = re.compile(r"https?://[A-Za-z0-9._~\[\]:-]+(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?")
_REDIS_URL = re.compile(r"rediss?://([^@/\s]*@)?[A-Za-z0-9._\[\]:-]+(:\d{1,5})?(/\d{0,2})?(\?[^\s]*)?")
_INTERNAL = frozenset({"log_service_address"})
# Settings the design names but the code does not apply yet: refused when set, so none reads as working.
_FIELD_TYPES = {f.name: f.type for f in fields(Settings) if f.name not in _INTERNAL}
_DEFAULTS = {f.name: f.default for f in fields(Settings)}
_ENV_PREFIX = "MODELPORT_"


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    found = {}
    for name in _FIELD_TYPES:
        if name == "providers":
            continue
        value = environ.get(_ENV_PREFIX + name.upper())
        if value is not None and value != "":
            found[name] = value
    return found


def _from_file(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = set(raw) - set(_FIELD_TYPES)
    if unknown:
        raise SettingsError(f"config file {path}: unknown setting(s) {', '.join(sorted(unknown))}")
    if "providers" in raw:
        raw["providers"] = tuple(_declared_provider(path, entry) for entry in raw["providers"])
    return raw


def _declared_provider(path: Path, entry: Any) -> DeclaredProvider:
    if not isinstance(entry, dict) or "slug" not in entry or "provider" not in entry:
        raise SettingsError(f"config file {path}: each [[providers]] needs 'slug' and 'provider'")
    allowed = {f.name for f in fields(DeclaredProvider)}
    unknown = set(entry) - allowed
    if unknown:
        raise SettingsError(f"config file {path}: provider '{entry['slug']}' has unknown key(s) {sorted(unknown)}")
    return DeclaredProvider(**entry)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, value: Any) -> Any:
    """Turn a flag, env string or TOML value into the field's type, naming the setting on failure."""
    if name not in _FIELD_TYPES:
        raise SettingsError(f"unknown setting '{name}'")
    kind = _FIELD_TYPES[name]
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind in ("Path", "Path | None"):
            return Path(value).expanduser()
        if kind == "tuple[str, ...]":
            return tuple(value) if isinstance(value, (list, tuple)) else tuple(p.strip() for p in str(value).split(",") if p.strip())
        return value
    except (TypeError, ValueError):
        env = _ENV_PREFIX + name.upper()
        raise SettingsError(f"setting '{name}' ({env}) has an invalid value {value!r}; expected {kind}") from None


HELP = {
    "host": "interface to listen on",
    "port": "port to listen on",
    "workers": "worker processes (each with its own SO_REUSEPORT socket)",
    "data_dir": "SQLite database, key files, spill files",
    "log_level": "server log level: critical, error, warning, info, debug",
    "config": "TOML config file: any setting by name, plus [[providers]]",
    "public_url": "the gateway's public origin for rewritten URLs (default: the request's Host, which must then be a valid host[:port])",
    "admin_key": "the admin gateway key (mp-...); generated into <data_dir>/admin.key when unset",
    "master_key": "base64/hex 32-byte key(s) sealing provider secrets, comma-separated for rotation; default: <data_dir>/master.key",
    "require_api_key": "refuse inference without a gateway key (false = Portkey OSS behaviour)",
    "allow_private_hosts": "let callers choose private/loopback custom hosts",
    "trusted_hosts": "comma-separated host names, IPs or CIDRs a stored provider's custom_host may name without SSRF checks",
    "max_body_bytes": "largest request body accepted",
    "max_header_bytes": "largest request line and headers together (bytes); beyond it: 431",
    "max_headers": "most request headers accepted; beyond it: 431",
    "header_timeout": "seconds a client may take to send a request's line and headers; then 408 and closed",
    "body_timeout": "seconds a client may stay silent in the middle of a request body; then the connection is closed",
    "upstream_timeout": "seconds an upstream may stay silent mid-response",
    "connect_timeout": "seconds to connect to an upstream",
    "stream_url_ttl": "seconds a signed stream link stays valid",
    "logging": "record every request in the log store",
    "log_bodies": "store request/response bodies in logs",
    "log_body_max_bytes": "cap on each stored body",
    "log_redact_paths": "comma-separated JSON paths redacted in stored bodies",
    "log_queue_size": "in-memory log queue before spilling to disk",
    "log_retention_days": "days log records are kept (older ones are deleted by the writer's hourly upkeep); 0 keeps them forever",
    "responses_retention_days": "days a Responses answer of a translated provider is kept for previous_response_id and GET /v1/responses/{id} (expired ones are deleted by the log writer's hourly upkeep)",
    "pricing_file": "operator price overrides (same format as the shipped table)",
    "replicate_pricing_file": "operator overrides of Replicate hardware, model and official prices (same format as providers/replicate/data/replicate.json)",
    "replicate_default_hardware": "SKU assumed for Replicate models of unknown hardware (cost is 'estimated')",
    "replicate_autopoll": "poll unpolled Replicate predictions so their cost is recorded",
    "replicate_autopoll_interval": "seconds between those polls",
    "replicate_isolate_predictions": "keys sharing a stored Replicate account see only the predictions, trainings and files they created (admin keys see all)",
    "cache_max_bytes": "memory for the response cache",
    "cache_share_across_keys": "let different gateway keys share cache entries",
    "budget_max_tokens": "output tokens a budget reserves for a request that states no max_tokens",
    "budget_admit_unpriced": "admit requests whose cost cannot be bounded (no known price) under a cost budget, reserving nothing; default: refuse them (412)",
    "signing_secret": "secret (32+ characters) the stream-link and webhook-relay signing keys derive from; set the same on every node behind one address; default: random keys in <data_dir>",
    "otel_endpoint": "OpenTelemetry collector's OTLP/HTTP base URL (e.g. http://collector:4318): a span per request and per upstream attempt goes to <endpoint>/v1/traces as JSON (docs/observability.md)",
    "otel_headers": "comma-separated name=value headers sent with every export (values percent-encoded, e.g. authorization=Bearer%20abc)",
    "otel_service_name": "service.name of the exported spans",
    "otel_queue_size": "spans held while the collector is slow or down; beyond it the oldest are dropped (modelport_otel_spans_dropped_total)",
    "database_url": "postgresql://... : keys, providers, configs and logs in PostgreSQL, shared by every node (needs MODELPORT_MASTER_KEY and MODELPORT_SIGNING_SECRET); default: SQLite in <data_dir>",
    "redis_url": "Redis (redis:// or rediss://) for rate-limit and budget counters and the response cache, shared by every node; unset: each node counts in its data_dir",
    "redis_key_prefix": "prefix of every Redis key, so gateways can share one Redis apart",
    "redis_timeout": "seconds a Redis call may take before it counts as failed (limits then fail closed or open, the cache is bypassed)",
    "limits_fail_open": "with Redis unreachable, admit requests without checking their limits (counted in /metrics); default: refuse them (503)",
}


def describe() -> list[tuple[str, str, str, str]]:
    """(env var, type, default, meaning) for every setting, for the README table."""
    rows = []
    for f in fields(Settings):
        if f.name == "providers" or f.name in _INTERNAL:
            continue
        kind = str(f.type).replace(" | None", ", optional")
        default = "unset" if f.default is None else str(f.default)
        rows.append((_ENV_PREFIX + f.name.upper(), kind, default, HELP.get(f.name, "")))
    return rows
