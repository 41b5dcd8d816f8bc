"""The schema's row format, shared by SQL stores: values checked and encoded on the way in, records
built on the way out. JSON columns are text, times are epoch milliseconds (portable across SQLite
and PostgreSQL, and cheap to compare).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

import orjson

from ..vault import Vault
from .base import (
    SCOPES,
    SLUG_PATTERN,
    UNCHANGED,
    ApiKey,
    Config,
    ResolvedProvider,
    StoredProvider,
)

Row = Mapping[str, Any]  # sqlite3.Row and asyncpg.Record both read by column name


# -- rows to records -----------------------------------------------------------------------------
def api_key_from_row(row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        key_hash=row["key_hash"],
        scopes=tuple(orjson.loads(row["scopes"])),
        allowed_providers=tuple(orjson.loads(row["allowed_providers"])),
        metadata=orjson.loads(row["metadata"]),
        expires_at=from_ms(row["expires_at"]),
        revoked_at=from_ms(row["revoked_at"]),
        created_at=from_ms(row["created_at"]),  # type: ignore[arg-type]
        updated_at=from_ms(row["updated_at"]),  # type: ignore[arg-type]
        last_used_at=from_ms(row["last_used_at"]),
        log_bodies=bool(row["log_bodies"]),
        rate_limits=json_or_none(row["rate_limits"]),
        usage_limits=json_or_none(row["usage_limits"]),
        usage_reset_at=from_ms(row["usage_reset_at"]),
    )


def stored_provider_from_row(row: Row) -> StoredProvider:
    return StoredProvider(
        slug=row["slug"],
        kind=row["kind"],
        name=row["name"],
        provider=row["provider"],
        secret_hint=row["secret_hint"],
        custom_host=row["custom_host"],
        settings=orjson.loads(row["settings"]),
        allowed_models=tuple(orjson.loads(row["allowed_models"])),
        note=row["note"],
        integration_slug=row["integration_slug"],
        usage_limits=json_or_none(row["usage_limits"]),
        rate_limits=json_or_none(row["rate_limits"]),
        created_at=from_ms(row["created_at"]),  # type: ignore[arg-type]
        updated_at=from_ms(row["updated_at"]),  # type: ignore[arg-type]
        usage_reset_at=from_ms(row["usage_reset_at"]),
    )


def config_from_row(row: Row) -> Config:
    return Config(
        id=row["id"],
        slug=row["slug"],
        name=row["name"],
        config=orjson.loads(row["config"]),
        is_default=bool(row["is_default"]),
        status=row["status"],
        created_at=from_ms(row["created_at"]),  # type: ignore[arg-type]
        updated_at=from_ms(row["updated_at"]),  # type: ignore[arg-type]
    )


def resolved_provider(row: Row, integration: Row | None, vault: Vault) -> ResolvedProvider:
    """Merge a provider row over its integration's row (if any) and decrypt the effective secret."""
    owner = row if row["secret_ciphertext"] or integration is None else integration
    sealed = owner["secret_ciphertext"]
    allow_lists = [set(orjson.loads(r["allowed_models"])) for r in (row, integration) if r is not None]
    allow_lists = [models for models in allow_lists if models]  # an empty list means "every model"
    return ResolvedProvider(
        slug=row["slug"],
        kind=row["kind"],
        name=row["name"],
        provider=row["provider"],
        secret=vault.decrypt(sealed, secret_context(owner["slug"])) if sealed else None,
        custom_host=row["custom_host"] or (integration["custom_host"] if integration is not None else None),
        settings={
            **(orjson.loads(integration["settings"]) if integration is not None else {}),
            **orjson.loads(row["settings"]),
        },
        allowed_models=frozenset(set.intersection(*allow_lists)) if allow_lists else None,
        usage_limits=json_or_none(row["usage_limits"]),
        rate_limits=json_or_none(row["rate_limits"]),
        integration_slug=row["integration_slug"],
        usage_anchor=from_ms(row["usage_reset_at"] or row["created_at"]),
    )


def secret_context(slug: str) -> str:
    """Associated data for a provider's ciphertext: binds it to its record."""
    return f"provider:{slug}"


# -- values in -----------------------------------------------------------------------------------
def changed_columns(**fields: tuple[Any, Callable[[Any], Any]]) -> dict[str, Any]:
    """The columns an update sets: each ``(value, encode)`` not left at UNCHANGED, encoded (and checked)."""
    return {column: encode(value) for column, (value, encode) in fields.items() if value is not UNCHANGED}


def new_record_id(prefix: str) -> str:
    """``prefix`` + 26 characters: 48 bits of milliseconds then 80 random bits (the ULID layout).

    Ids sort by creation time, so ordering by id lists records in creation order and pages by id.
    Within one millisecond the random part counts up, so ids made by one process stay in order (the
    ULID spec's "monotonicity").
    """
    global _last_id
    with _id_lock:
        value = now_ms() << 80 | int.from_bytes(os.urandom(10), "big")
        if value <= _last_id:
            value = _last_id + 1
        _last_id = value
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return prefix + "".join(reversed(chars))


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_id_lock = threading.Lock()
_last_id = 0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_ms(value: datetime | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError("times must be timezone-aware datetimes")
    return int(value.timestamp() * 1000)


def from_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, timezone.utc)


def to_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def to_json_or_null(value: Any) -> str | None:
    return None if value is None else to_json(value)


def json_or_none(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def check_slug(slug: str) -> str:
    if not isinstance(slug, str) or not SLUG_PATTERN.match(slug):
        raise ValueError(
            f"invalid slug {slug!r}: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
        )
    return slug


def check_config_slug(slug: str) -> str:
    check_slug(slug)
    if slug.startswith("pc-"):
        raise ValueError("a config slug must not start with 'pc-' (that prefix is for config ids)")
    return slug


def check_scopes(scopes: Sequence[str]) -> list[str]:
    if isinstance(scopes, str):
        raise ValueError("scopes must be a list of scope names, not one string")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(map(str, unknown))}; known scopes: {', '.join(SCOPES)}")
    return list(dict.fromkeys(scopes))


def check_name(value: Any, what: str = "name") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    return value.strip()


def check_strings(values: Any, what: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, (list, tuple, set, frozenset)) or not all(
        isinstance(v, str) and v for v in values
    ):
        raise ValueError(f"{what} must be a list of non-empty strings")
    return list(dict.fromkeys(values))


def check_object(value: Any, what: str, required: bool = False) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a JSON object")
    return dict(value)


def check_host(value: str | None) -> str | None:
    """An admin-set custom host must be an absolute http(s) URL (SSRF checks happen on the hot path)."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"custom_host must be an http(s) URL, got {value!r}")
    return value.rstrip("/")
