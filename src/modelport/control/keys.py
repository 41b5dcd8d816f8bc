"""``/v1/api-keys``: gateway API keys, Portkey's shape (docs: "Create API Key", "List API Keys").

A key's plaintext is returned only by create and by rotate, once each time; every other reply shows
``key`` as the visible prefix only. ModelPort is single-tenant, so Portkey's ``type``,
``sub-type``, ``workspace_id`` and ``user_id`` are accepted and ignored.

A key with ``keys.write`` but not ``admin`` can neither grant nor touch more than it holds itself:
otherwise it could mint an admin key, or rotate the admin key and read the new secret. "More" is any
scope it lacks, any provider outside its own ``allowed_providers``, and any time past its own expiry
(a key that expires may not create or keep a key that outlives it, itself included).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from ..gateway.auth import Principal
from ..errors import Forbidden, NotFound
from ..gateway.limits import key_rules
from ..usage.limits import key_budget, key_token_limits
from ..store import SCOPES, UNCHANGED, ApiKey, Store
from ..store.base import utc_now
from .router import Request, Route
from .rules import allowed_providers, key_metadata
from .schema import (
    RATE_LIMITS_SCHEMA,
    USAGE_LIMITS_SCHEMA,
    Invalid,
    Shape,
    choice,
    flag,
    ignored,
    mapping,
    moment,
    rate_limits,
    shown,
    strings,
    text,
    unsupported,
    usage_limits,
)
from .wire import DELETED, PAGING, TIME, USAGE, collect, iso, listing, limit_usage, listing_schema

log = logging.getLogger("modelport.control")

KEY_TYPES = ("organisation", "workspace")
KEY_SUB_TYPES = ("user", "service")

# Portkey names scopes "<resource>.<action>" (docs: "API Keys (AuthN and AuthZ)"); they are mapped onto
# ModelPort's coarser read/write scopes so SDK examples work unchanged.
_PORTKEY_RESOURCES = {
    "virtual_keys": "providers", "providers": "providers", "integrations": "providers",
    "configs": "configs", "logs": "logs", "api_keys": "keys", "organisation_service_api_keys": "keys",
    "workspace_service_api_keys": "keys", "workspace_user_api_keys": "keys",
}  # fmt: skip
# Portkey scopes that name a whole capability rather than a resource's read or write.
_PORTKEY_WHOLE = {"completions.write": "inference", "completions.read": "inference", "analytics.view": "logs.read",
                  "feedback.write": "logs.write", "feedback.create": "logs.write"}
_PORTKEY_ACTIONS = {"read": "read", "list": "read", "view": "read", "export": "read",
                    "create": "write", "update": "write", "delete": "write", "copy": "write", "write": "write"}

_COMMON = (
    strings("scopes", f"ModelPort scopes ({', '.join(SCOPES)}) or Portkey ones such as configs.read; "
            "default: inference."),
    strings("allowed_providers", "Provider ids (replicate: with the caller's own credential) and stored "
            "providers (@team-a: with the stored credential) the key may use; an id does not allow stored "
            "providers of that kind; empty = all."),
    mapping("defaults", "Portkey's per-key defaults; ModelPort honours defaults.metadata, merged into each "
            "request's metadata."),
    flag("log_bodies", "Store request and response bodies in the logs for this key's requests (default true)."),
    unsupported("description", "API keys have no description in ModelPort's store yet; use name."),
    rate_limits(),
    usage_limits(),
)
CREATE = Shape((
    text("name", "A label for people.", required=True, max_length=200),
    *_COMMON,
    moment("expires_at", "When the key stops working (ISO 8601); null = never."),
    ignored("type"), ignored("sub-type"), ignored("workspace_id"), ignored("user_id"),
))
UPDATE = Shape((
    text("name", "A label for people.", max_length=200),
    *_COMMON,
    flag("reset_usage", "Start the key's budget (usage_limits) afresh; rate-limit windows are not reset."),
    moment("expires_at", "When the key stops working (ISO 8601); null = never."),
    ignored("id"), ignored("workspace_id"),
))

API_KEY = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "api-key"},
        "name": {"type": "string"},
        "key": {"type": "string", "description": "The visible prefix only, e.g. mp-Ab3dE9f…"},
        "status": {"enum": ["active", "revoked", "expired"]},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "allowed_providers": {"type": "array", "items": {"type": "string"}},
        "defaults": {"type": "object", "properties": {"metadata": {"type": "object"}}},
        "log_bodies": {"type": "boolean"},
        "rate_limits": {"anyOf": [RATE_LIMITS_SCHEMA, {"type": "null"}]},
        "usage_limits": {"anyOf": [USAGE_LIMITS_SCHEMA, {"type": "null"}]},
        "usage": USAGE,
        "expires_at": TIME, "revoked_at": TIME, "last_used_at": TIME, "created_at": TIME, "last_updated_at": TIME,
    },
    "required": ["id", "object", "name", "key", "status", "scopes"],
}  # fmt: skip
NEW_SECRET = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "key": {"type": "string", "description": "The full key. Shown this once: store it now."},
        "object": {"const": "api-key"},
    },
    "required": ["id", "key", "object"],
}


def create(store: Store, request: Request) -> dict[str, Any]:
    body = request.body
    scopes = _scopes(body.get("scopes", ["inference"]))
    providers = allowed_providers(body.get("allowed_providers", []), store, "allowed_providers")
    expires_at = body.get("expires_at")
    _may_grant(request.principal, scopes, providers, expires_at)
    if expires_at is not None and expires_at <= utc_now():
        raise Invalid("expires_at must be in the future")
    record, token = store.create_api_key(
        body["name"], scopes=scopes, allowed_providers=providers, expires_at=expires_at,
        metadata=_metadata(body.get("defaults")), log_bodies=body.get("log_bodies", True),
        rate_limits=body.get("rate_limits"), usage_limits=body.get("usage_limits"),
    )  # fmt: skip
    log.info("api key %s created by %s", record.id, request.principal.key_id)
    return {"id": record.id, "key": token, "object": "api-key"}


def create_typed(store: Store, request: Request) -> dict[str, Any]:
    """``POST /api-keys/{type}/{sub_type}``, the path the Portkey SDK uses."""
    choice(request.params["type"], "type (in the path)", KEY_TYPES)
    choice(request.params["sub_type"], "sub-type (in the path)", KEY_SUB_TYPES)
    return create(store, request)


def list_keys(store: Store, request: Request) -> dict[str, Any]:
    return listing(collect(store.list_api_keys), request.query, lambda record: _with_usage(record, request))


def retrieve(store: Store, request: Request) -> dict[str, Any]:
    return _with_usage(_existing(store, request.params["key_id"]), request)


def _with_usage(record: ApiKey, request: Request) -> dict[str, Any]:
    usage = limit_usage(request, key_rules(record.id, record.name, record.rate_limits),
                        key_token_limits(record.id, record.name, record.rate_limits),
                        key_budget(record.id, record.name, record.usage_limits, record.usage_anchor))
    return {**render(record), "usage": usage}


def update(store: Store, request: Request) -> dict[str, Any]:
    record = _manageable(store, request)
    body = request.body
    scopes = _scopes(body["scopes"]) if "scopes" in body else UNCHANGED
    providers = (allowed_providers(body["allowed_providers"], store, "allowed_providers")
                 if "allowed_providers" in body else UNCHANGED)  # fmt: skip
    _may_grant(request.principal,
               record.scopes if scopes is UNCHANGED else scopes,
               record.allowed_providers if providers is UNCHANGED else providers,
               body.get("expires_at", record.expires_at))  # fmt: skip
    updated = store.update_api_key(
        record.id,
        name=body.get("name", UNCHANGED),
        scopes=scopes,
        allowed_providers=providers,
        expires_at=body.get("expires_at", UNCHANGED),
        metadata=_metadata(body["defaults"]) if "defaults" in body else UNCHANGED,
        log_bodies=body.get("log_bodies", UNCHANGED),
        rate_limits=body.get("rate_limits", UNCHANGED),
        usage_limits=body.get("usage_limits", UNCHANGED),
        reset_usage=bool(body.get("reset_usage")),
    )
    log.info("api key %s updated by %s", record.id, request.principal.key_id)
    return render(updated)


def delete(store: Store, request: Request) -> dict[str, Any]:
    record = _manageable(store, request)
    store.delete_api_key(record.id)
    log.info("api key %s deleted by %s", record.id, request.principal.key_id)
    return {}


def rotate(store: Store, request: Request) -> dict[str, Any]:
    record = _manageable(store, request)
    rotated, token = store.rotate_api_key(record.id)
    log.info("api key %s rotated by %s", record.id, request.principal.key_id)
    return {"id": rotated.id, "key": token, "object": "api-key"}


def revoke(store: Store, request: Request) -> dict[str, Any]:
    record = _manageable(store, request)
    revoked = store.revoke_api_key(record.id)
    log.info("api key %s revoked by %s", record.id, request.principal.key_id)
    return render(revoked)


def render(record: ApiKey) -> dict[str, Any]:
    return {
        "id": record.id,
        "object": "api-key",
        "name": record.name,
        "key": f"{record.prefix}…",
        "status": _status(record),
        "scopes": list(record.scopes),
        "allowed_providers": list(record.allowed_providers),
        "defaults": {"metadata": dict(record.metadata)},
        "log_bodies": record.log_bodies,
        "rate_limits": record.rate_limits,
        "usage_limits": record.usage_limits,
        "expires_at": iso(record.expires_at),
        "revoked_at": iso(record.revoked_at),
        "last_used_at": iso(record.last_used_at),
        "created_at": iso(record.created_at),
        "last_updated_at": iso(record.updated_at),
    }


def _status(record: ApiKey) -> str:
    if record.revoked_at is not None:
        return "revoked"
    return "active" if record.is_active() else "expired"


def _scopes(names: list[str]) -> list[str]:
    return list(dict.fromkeys(_our_scope(name) for name in names))


def _our_scope(name: str) -> str:
    if name in SCOPES:
        return name
    if name in _PORTKEY_WHOLE:
        return _PORTKEY_WHOLE[name]
    resource, _, action = name.partition(".")
    if resource in _PORTKEY_RESOURCES and action in _PORTKEY_ACTIONS:
        return f"{_PORTKEY_RESOURCES[resource]}.{_PORTKEY_ACTIONS[action]}"
    raise Invalid(f"scopes: unknown scope {shown(name)}; use {', '.join(SCOPES)} (or Portkey's resource.action names)")


def _metadata(defaults: dict[str, Any] | None) -> dict[str, Any]:
    defaults = defaults or {}
    unsupported = sorted(set(defaults) - {"metadata"})
    if unsupported:
        raise Invalid(f"defaults supports only 'metadata', not {', '.join(map(shown, unsupported))}")
    metadata = defaults.get("metadata") or {}
    return key_metadata(metadata, "defaults.metadata")


def _existing(store: Store, key_id: str) -> ApiKey:
    record = store.get_api_key(key_id)
    if record is None:
        raise NotFound(f"no API key {key_id!r}")
    return record


def _manageable(store: Store, request: Request) -> ApiKey:
    record = _existing(store, request.params["key_id"])
    _may_grant(request.principal, record.scopes, record.allowed_providers, record.expires_at)
    return record


def _may_grant(principal: Principal, scopes: Any, providers: Any, expires_at: datetime | None) -> None:
    """A caller short of ``admin`` may only create or manage keys within its own scopes, providers and
    lifetime."""
    if principal.can("admin"):
        return
    beyond = [scope for scope in scopes if scope not in principal.scopes]
    if beyond:
        raise Forbidden(f"this gateway API key cannot grant or manage scope(s) it lacks: {', '.join(beyond)}")
    limited = principal.providers and "*" not in principal.providers
    if limited and (not providers or not set(providers) <= principal.providers):
        raise Forbidden("this gateway API key is limited to some providers; keys it manages must be too")
    if principal.expires_at is not None and (expires_at is None or expires_at.timestamp() > principal.expires_at):
        own = datetime.fromtimestamp(principal.expires_at, timezone.utc).isoformat()
        raise Forbidden(f"this gateway API key expires at {own}; keys it creates or manages must expire no later "
                        "(set expires_at)")


ROUTES = (
    Route("GET", "/api-keys", "keys.read", list_keys, "List gateway API keys", "API keys",
          listing_schema(API_KEY), query=PAGING),
    Route("POST", "/api-keys", "keys.write", create, "Create a gateway API key (the key is shown once)",
          "API keys", NEW_SECRET, body=CREATE),
    Route("GET", "/api-keys/{key_id}", "keys.read", retrieve, "Retrieve a gateway API key", "API keys", API_KEY),
    Route("PUT", "/api-keys/{key_id}", "keys.write", update, "Update a gateway API key", "API keys", API_KEY,
          body=UPDATE),
    Route("DELETE", "/api-keys/{key_id}", "keys.write", delete, "Delete a gateway API key", "API keys", DELETED),
    Route("POST", "/api-keys/{key_id}/rotate", "keys.write", rotate,
          "Give a key a new secret (shown once); the old one stops working at once", "API keys", NEW_SECRET),
    Route("POST", "/api-keys/{key_id}/revoke", "keys.write", revoke,
          "Revoke a key: it stops working on the next request, on every worker", "API keys", API_KEY),
    Route("POST", "/api-keys/{type}/{sub_type}", "keys.write", create_typed,
          "Create a gateway API key (Portkey's path; type and sub-type are accepted and ignored)", "API keys",
          NEW_SECRET, body=CREATE),
)  # fmt: skip
