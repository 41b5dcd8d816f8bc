"""The schema's row format, shared by SQL stores: values checked and encoded on the way in, records
built on the way out. JSON columns are read as text (PostgreSQL's jsonb is loaded as text for this),
times are epoch milliseconds (portable across SQLite and PostgreSQL, and cheap to compare).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

import orjson

from ..keys import generate_api_key, hash_api_key, mask_secret, visible_prefix
from ..vault import Vault
from .base import (
    CONFIG_STATUSES,
    PROVIDER_KINDS,
    SCOPES,
    SLUG_PATTERN,
    UNCHANGED,
    ApiKey,
    Config,
    NotFound,
    ResolvedProvider,
    SealedSetting,
    SecretSetting,
    StoredProvider,
    utc_now,
)

Row = Mapping[str, Any]  # sqlite3.Row and psycopg's dict rows both read by column name


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
        settings=shown_settings(orjson.loads(row["settings"])),
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
            **(opened_settings(vault, integration) if integration is not None else {}),
            **opened_settings(vault, row),
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


# A sealed setting in the settings JSON: {"$sealed": <ciphertext>, "hint": "ab…yz"}. A plain setting is a string.
_SEALED = "$sealed"


def setting_context(slug: str, name: str) -> str:
    """Associated data for a sealed setting: binds it to its record and its name."""
    return f"provider:{slug}:setting:{name}"


def sealed_settings(vault: Vault, slug: str, settings: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """Settings as stored: each ``SecretSetting`` sealed, a ``SealedSetting`` kept as it was sealed."""
    if not settings:
        return settings
    stored: dict[str, Any] = {}
    for name, value in settings.items():
        if isinstance(value, SealedSetting):
            stored[name] = {_SEALED: value.ciphertext, "hint": str.__str__(value)}
        elif isinstance(value, SecretSetting):
            stored[name] = {_SEALED: vault.encrypt(str(value), setting_context(slug, name)), "hint": mask_secret(value)}
        else:
            stored[name] = value
    return stored


def shown_settings(stored: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as a record shows them: a sealed one as its hint (``SealedSetting``), never its value."""
    return {name: SealedSetting(value["hint"], value[_SEALED]) if _is_sealed(value) else value
            for name, value in stored.items()}


def opened_settings(vault: Vault, row: Row) -> dict[str, Any]:
    """A row's settings with each sealed one decrypted (for the hot path only, as its secret is)."""
    stored = orjson.loads(row["settings"])
    return {name: vault.decrypt(value[_SEALED], setting_context(row["slug"], name)) if _is_sealed(value) else value
            for name, value in stored.items()}


def resealed_settings(vault: Vault, slug: str, raw: str | bytes) -> str | None:
    """A row's settings JSON with each sealed setting sealed again under ``vault``'s current key; None
    when none needed it (key rotation, ``reencrypt_secrets``)."""
    stored = orjson.loads(raw)
    stale = [name for name, value in stored.items() if _is_sealed(value) and not vault.is_current(value[_SEALED])]
    for name in stale:
        context = setting_context(slug, name)
        stored[name] = {**stored[name], _SEALED: vault.encrypt(vault.decrypt(stored[name][_SEALED], context), context)}
    return to_json(stored) if stale else None


def _is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and _SEALED in value


# -- values in -----------------------------------------------------------------------------------
# What a new or changed record's columns are, checked and encoded, the same for every SQL store: a store
# adds only how it writes them (its placeholders, its transaction, its errors).
MIN_IMPORTED_TOKEN_LENGTH = 32


def new_api_key_values(
    name: str, *, scopes: Sequence[str], allowed_providers: Sequence[str], expires_at: datetime | None,
    metadata: Mapping[str, Any] | None, token: str | None, log_bodies: bool, rate_limits: Any, usage_limits: Any,
) -> tuple[dict[str, Any], str]:
    """A new key's columns (without its times) and its plaintext, generated unless ``token`` imports one."""
    if token is None:
        token, prefix, key_hash = generate_api_key()
    elif len(token) < MIN_IMPORTED_TOKEN_LENGTH:
        raise ValueError(f"an imported API key must be at least {MIN_IMPORTED_TOKEN_LENGTH} characters")
    else:
        prefix, key_hash = visible_prefix(token), hash_api_key(token)
    values = {
        "id": new_record_id("key_"),
        "name": check_name(name),
        "prefix": prefix,
        "key_hash": key_hash,
        "scopes": to_json(check_scopes(scopes)),
        "allowed_providers": to_json(check_strings(allowed_providers, "allowed_providers")),
        "metadata": to_json(check_object(metadata, "metadata")),
        "expires_at": to_ms(expires_at),
        "log_bodies": bool(log_bodies),
        "rate_limits": to_json_or_null(rate_limits),
        "usage_limits": to_json_or_null(usage_limits),
    }
    return values, token


def api_key_changes(*, name: Any, scopes: Any, allowed_providers: Any, expires_at: Any, metadata: Any,
                    log_bodies: Any, rate_limits: Any, usage_limits: Any, reset_usage: bool) -> dict[str, Any]:
    return changed_columns(
        rate_limits=(rate_limits, to_json_or_null),
        usage_limits=(usage_limits, to_json_or_null),
        usage_reset_at=(utc_now() if reset_usage else UNCHANGED, to_ms),
        log_bodies=(log_bodies, bool),
        name=(name, check_name),
        scopes=(scopes, lambda v: to_json(check_scopes(v))),
        allowed_providers=(allowed_providers, lambda v: to_json(check_strings(v, "allowed_providers"))),
        expires_at=(expires_at, to_ms),
        metadata=(metadata, lambda v: to_json(check_object(v, "metadata"))),
    )


def new_provider_values(
    slug: str, *, kind: str, name: str | None, custom_host: str | None, settings: Mapping[str, Any] | None,
    allowed_models: Sequence[str], note: str | None, integration_slug: str | None, usage_limits: Any, rate_limits: Any,
    vault: Vault,
) -> dict[str, Any]:
    """A new stored provider's columns, without its provider id (``check_integration``) and secret (``seal``)."""
    check_slug(slug)
    if kind not in PROVIDER_KINDS:
        raise ValueError(f"kind must be one of {', '.join(PROVIDER_KINDS)}, not {kind!r}")
    return {
        "slug": slug,
        "kind": kind,
        "name": check_name(name or slug),
        "custom_host": check_host(custom_host),
        "settings": to_json(sealed_settings(vault, slug, check_object(settings, "settings"))),
        "allowed_models": to_json(check_strings(allowed_models, "allowed_models")),
        "note": note,
        "integration_slug": integration_slug,
        "usage_limits": to_json_or_null(usage_limits),
        "rate_limits": to_json_or_null(rate_limits),
    }


def provider_changes(*, name: Any, custom_host: Any, settings: Any, allowed_models: Any, note: Any,
                     usage_limits: Any, rate_limits: Any, reset_usage: bool, vault: Vault, slug: str) -> dict[str, Any]:
    """The columns an update sets, except the integration and the secret, which need the current row."""
    return changed_columns(
        usage_reset_at=(utc_now() if reset_usage else UNCHANGED, to_ms),
        name=(name, check_name),
        custom_host=(custom_host, check_host),
        settings=(settings, lambda v: to_json(sealed_settings(vault, slug, check_object(v, "settings")))),
        allowed_models=(allowed_models, lambda v: to_json(check_strings(v, "allowed_models"))),
        note=(note, lambda v: v),  # free text; None clears it
        usage_limits=(usage_limits, to_json_or_null),
        rate_limits=(rate_limits, to_json_or_null),
    )


def check_integration(kind: str, provider: str | None, integration_slug: str | None,
                      integration: Row | None) -> str:
    """Validate an integration link (``integration`` is the row of ``integration_slug``, if any); return the
    provider id, inherited from the integration if unset."""
    if integration_slug is not None:
        if kind != "provider":
            raise ValueError(f"only a 'provider' can use an integration, not a {kind!r}")
        if integration is None or integration["kind"] != "integration":
            raise NotFound(f"no integration {integration_slug!r}")
        if provider is not None and provider != integration["provider"]:
            raise ValueError(
                f"provider {provider!r} does not match integration {integration_slug!r} ({integration['provider']})"
            )
        return integration["provider"]
    if not provider:
        raise ValueError("a stored provider needs a provider id (e.g. 'replicate') or an integration")
    return provider


def seal(vault: Vault, slug: str, secret: str | None) -> tuple[str | None, str | None]:
    """A provider secret's ciphertext and hint (``None, None`` for no secret)."""
    if secret is None:
        return None, None
    if not isinstance(secret, str) or not secret:
        raise ValueError("secret must be a non-empty string")
    return vault.encrypt(secret, secret_context(slug)), mask_secret(secret)


def new_config_values(name: str, config: Mapping[str, Any], *, slug: str | None, is_default: bool) -> dict[str, Any]:
    config_id = new_record_id("pc-")
    return {
        "id": config_id,
        "slug": config_id if slug is None else check_config_slug(slug),
        "name": check_name(name),
        "config": to_json(check_object(config, "config", required=True)),
        "is_default": bool(is_default),
        "status": "active",
    }


def config_changes(*, name: Any, config: Any, status: Any, is_default: Any) -> dict[str, Any]:
    if status is not UNCHANGED and status not in CONFIG_STATUSES:
        raise ValueError(f"status must be one of {', '.join(CONFIG_STATUSES)}, not {status!r}")
    return changed_columns(
        name=(name, check_name),
        config=(config, lambda v: to_json(check_object(v, "config", required=True))),
        status=(status, lambda v: v),
        is_default=(is_default, bool),
    )


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
