"""``/v1/virtual-keys``, ``/v1/integrations``, ``/v1/providers``: stored provider credentials.

All three are rows of one store table told apart by ``kind``; each resource sees only its own kind, so
an integration cannot be deleted through ``/virtual-keys``. Field names are Portkey's (openapi.yaml,
portkey-ai 2.3.4 ``apis/virtual_keys.py``, ``integrations.py``, ``providers.py``):

- a virtual key holds its own secret and provider id; ``apiVersion``, ``resourceName`` and
  ``deploymentName`` are its Azure settings, shown back in ``model_config``;
- an integration holds a secret for ``ai_provider_id``, with provider settings in ``configurations``;
- a provider points at an integration (``integration_id`` is the integration's slug) and inherits its
  secret and settings: the ``@slug`` callers use.

Secrets (``key``) are accepted on create and update and never returned: only a masked hint.
``custom_host`` (our addition) decides where the stored secret is sent, so only an admin key may set or
change it, and even then it must pass the SSRF rules unless the operator trusts the host
(``trusted_hosts``); the gateway also connects to it through the SSRF-guarded session (hosts.py).
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any, Mapping

from ..errors import Forbidden, NotFound
from ..gateway.limits import provider_rules
from ..providers.registry import all_settings
from ..usage.limits import provider_budget, provider_token_limits
from ..store import UNCHANGED, Store, StoredProvider
from ..store.base import SLUG_PATTERN
from . import rules
from .router import Request, Route
from .schema import (
    RATE_LIMITS_SCHEMA,
    USAGE_LIMITS_SCHEMA,
    Invalid,
    Shape,
    flag,
    ignored,
    mapping,
    rate_limits,
    secret,
    strings,
    text,
    unsupported,
    url,
    usage_limits,
)  # fmt: skip
from .wire import DELETED, PAGING, TIME, USAGE, collect, iso, listing, limit_usage, listing_schema

log = logging.getLogger("modelport.control")

PROVIDER_IDS, STORED_SETTINGS = rules.PROVIDER_IDS, rules.STORED_SETTINGS
# Portkey's virtual-key fields (the camelCase spellings each provider declares, e.g. Azure's resourceName)
# → ModelPort's setting names.
VIRTUAL_KEY_SETTINGS = {key: setting.name for _, setting in all_settings() for key in setting.config_keys
                        if key != key.lower()}
_DOCS = {setting.name: setting.doc for _, setting in all_settings()}
MAX_SETTING_CHARS = 16 * 1024  # a secret setting may be a whole service-account JSON (~2.5 KB)
_PORTKEY_NAME = {ours: theirs for theirs, ours in VIRTUAL_KEY_SETTINGS.items()}
NO_EXPIRY = "stored providers do not expire in ModelPort yet; delete or re-key them instead."

_slug = text("slug", "URL- and header-safe id used as @slug; generated from the name when omitted.",
             max_length=64, pattern=SLUG_PATTERN)
_key = secret("key", "The provider's API key. Stored encrypted; never returned (only a masked hint).")
_models = strings("allowed_models", "Models this credential may be used with; empty = all.")
_host = url("custom_host", "Upstream base URL instead of the provider's default, e.g. https://llm.example.com/v1. "
            "Admin keys only; it must pass the SSRF rules unless the operator trusts it (MODELPORT_TRUSTED_HOSTS).")
_note = text("note", "Free text.", nullable=True, max_length=2000)
_limits = (usage_limits(), rate_limits())
_reset_usage = flag("reset_usage", "Start this provider's budget (usage_limits) afresh; rate-limit windows are not reset.")


def _settings_fields() -> tuple[Any, ...]:
    return tuple(text(name, f"{_DOCS[setting] or setting} ({setting}).", nullable=True,
                      max_length=MAX_SETTING_CHARS if setting in rules.SECRET_SETTINGS else 200)
                 for name, setting in VIRTUAL_KEY_SETTINGS.items())


VIRTUAL_KEY_CREATE = Shape((
    text("name", "A label for people.", required=True, max_length=200),
    text("provider", "Provider id.", required=True, enum=PROVIDER_IDS),
    _key, _slug, _note, *_settings_fields(), _host, _models, *_limits,
    unsupported("expires_at", NO_EXPIRY), ignored("workspace_id"),
))  # fmt: skip
VIRTUAL_KEY_UPDATE = Shape((
    text("name", "A label for people.", max_length=200),
    _key, _note, *_settings_fields(), _host, _models, *_limits, _reset_usage,
    unsupported("expires_at", NO_EXPIRY), ignored("workspace_id"), ignored("slug"),
))  # fmt: skip
_configurations = mapping("configurations", f"Provider settings ({', '.join(STORED_SETTINGS)}) and custom_host; "
                          "an update replaces them all.")
INTEGRATION_CREATE = Shape((
    text("name", "A label for people.", required=True, max_length=200),
    text("ai_provider_id", "Provider id.", required=True, enum=PROVIDER_IDS),
    _key, _slug, text("description", "Free text.", nullable=True, max_length=2000), _configurations, _models,
    ignored("workspace_id"),
))  # fmt: skip
INTEGRATION_UPDATE = Shape((
    text("name", "A label for people.", max_length=200),
    _key, text("description", "Free text.", nullable=True, max_length=2000), _configurations, _models,
    ignored("workspace_id"),
))  # fmt: skip
PROVIDER_CREATE = Shape((
    text("name", "A label for people.", required=True, max_length=200),
    text("integration_id", "Slug of the integration whose credential this provider uses.", required=True,
         max_length=64, pattern=SLUG_PATTERN),
    _slug, _note, _models, *_limits, unsupported("expires_at", NO_EXPIRY), ignored("workspace_id"),
))  # fmt: skip
PROVIDER_UPDATE = Shape((
    text("name", "A label for people.", max_length=200),
    _note, _models, *_limits, unsupported("expires_at", NO_EXPIRY),
    _reset_usage,
    ignored("workspace_id"),
))  # fmt: skip

_COMMON_OUT = {
    "id": {"type": "string"}, "slug": {"type": "string"}, "name": {"type": "string"},
    "status": {"const": "active"}, "allowed_models": {"type": "array", "items": {"type": "string"}},
    "created_at": TIME, "last_updated_at": TIME,
}  # fmt: skip
_LIMITS_OUT = {"usage_limits": {"anyOf": [USAGE_LIMITS_SCHEMA, {"type": "null"}]},
               "rate_limits": {"anyOf": [RATE_LIMITS_SCHEMA, {"type": "null"}]}, "usage": USAGE}
_HINT = {"type": ["string", "null"], "description": "A masked hint of the secret, e.g. r8_t…oken."}
VIRTUAL_KEY = {
    "type": "object",
    "properties": {**_COMMON_OUT, **_LIMITS_OUT, "object": {"const": "virtual-key"},
                   "note": {"type": ["string", "null"]}, "ai_provider_name": {"type": "string"},
                   "masked_api_key": _HINT, "model_config": {"type": "object"}},
    "required": ["id", "slug", "object", "name", "ai_provider_name"],
}  # fmt: skip
INTEGRATION = {
    "type": "object",
    "properties": {**_COMMON_OUT, "object": {"const": "integration"}, "description": {"type": ["string", "null"]},
                   "ai_provider_id": {"type": "string"}, "masked_key": _HINT, "configurations": {"type": "object"}},
    "required": ["id", "slug", "object", "name", "ai_provider_id"],
}  # fmt: skip
PROVIDER = {
    "type": "object",
    "properties": {**_COMMON_OUT, **_LIMITS_OUT, "object": {"const": "provider"},
                   "note": {"type": ["string", "null"]}, "integration_id": {"type": ["string", "null"]},
                   "ai_provider_id": {"type": "string"}, "masked_api_key": _HINT,
                   "custom_host": {"type": ["string", "null"], "description": "Where its requests go, for a provider "
                                   "declared in the gateway's settings; null: its integration's, or the provider's own API."}},
    "required": ["id", "slug", "object", "name", "ai_provider_id"],
}  # fmt: skip
CREATED = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "slug": {"type": "string"}, "object": {"type": "string"}},
    "required": ["id", "slug"],
}


# -- virtual keys ----------------------------------------------------------------------------------
def create_virtual_key(store: Store, request: Request) -> dict[str, Any]:
    body = request.body
    settings = _virtual_key_settings({}, body, body["provider"])
    host = _checked_host(request, None, body.get("custom_host"))
    rules.require_settings(body["provider"], settings, host, name_of=_portkey_name)
    record = store.create_provider(
        body.get("slug") or _new_slug(body["name"]), kind="virtual-key", provider=body["provider"],
        name=body["name"], secret=body.get("key"), custom_host=host, settings=settings,
        allowed_models=body.get("allowed_models", ()), note=body.get("note"),
        usage_limits=body.get("usage_limits"), rate_limits=body.get("rate_limits"),
    )  # fmt: skip
    return _created(record, request)


def update_virtual_key(store: Store, request: Request) -> dict[str, Any]:
    current = _existing(store, request.params["slug"], "virtual-key")
    body = request.body
    settings = _virtual_key_settings(current.settings, body, current.provider)
    host = _checked_host(request, current.custom_host, body.get("custom_host", current.custom_host))
    rules.require_settings(current.provider, settings, host, name_of=_portkey_name)
    changes = _common_changes(body)
    if "custom_host" in body:
        changes["custom_host"] = host
    if any(name in body for name in VIRTUAL_KEY_SETTINGS):
        changes["settings"] = settings
    return _updated(store, current, request, render_virtual_key, **changes)


def render_virtual_key(record: StoredProvider) -> dict[str, Any]:
    model_config = {_portkey_name(name): value for name, value in record.settings.items()}
    if record.custom_host:
        model_config["customHost"] = record.custom_host
    return {
        **_common(record, "virtual-key"), "note": record.note, "ai_provider_name": record.provider,
        "masked_api_key": record.secret_hint, "model_config": model_config,
        "usage_limits": record.usage_limits, "rate_limits": record.rate_limits,
    }  # fmt: skip


def _portkey_name(setting: str) -> str:
    return _PORTKEY_NAME.get(setting, setting)


def _virtual_key_settings(current: Mapping[str, Any], body: Mapping[str, Any], provider: str) -> dict[str, Any]:
    settings = dict(current)
    for theirs, ours in VIRTUAL_KEY_SETTINGS.items():
        if theirs in body:
            settings.pop(ours, None)
            if body[theirs]:
                settings[ours] = body[theirs]
    return rules.provider_settings(settings, "settings", provider=provider)


# -- integrations ----------------------------------------------------------------------------------
def create_integration(store: Store, request: Request) -> dict[str, Any]:
    body = request.body
    settings, host = _split_configurations(body.get("configurations") or {}, body["ai_provider_id"])
    host = _checked_host(request, None, host)
    rules.require_settings(body["ai_provider_id"], settings, host, name_of=_in_configurations)
    record = store.create_provider(
        body.get("slug") or _new_slug(body["name"]), kind="integration", provider=body["ai_provider_id"],
        name=body["name"], secret=body.get("key"), custom_host=host, settings=settings,
        allowed_models=body.get("allowed_models", ()), note=body.get("description"),
    )  # fmt: skip
    return _created(record, request)


def update_integration(store: Store, request: Request) -> dict[str, Any]:
    current = _existing(store, request.params["slug"], "integration")
    body = request.body
    changes = _common_changes(body)
    if "description" in body:
        changes["note"] = body["description"]
    if "configurations" in body:
        changes["settings"], host = _split_configurations(body["configurations"], current.provider)
        changes["custom_host"] = _checked_host(request, current.custom_host, host)
        rules.require_settings(current.provider, changes["settings"], changes["custom_host"],
                               name_of=_in_configurations)  # fmt: skip
    return _updated(store, current, request, render_integration, **changes)


def render_integration(record: StoredProvider) -> dict[str, Any]:
    configurations = dict(record.settings)
    if record.custom_host:
        configurations["custom_host"] = record.custom_host
    return {
        **_common(record, "integration"), "description": record.note, "ai_provider_id": record.provider,
        "masked_key": record.secret_hint, "configurations": configurations,
    }  # fmt: skip


def _split_configurations(raw: Mapping[str, Any], provider: str) -> tuple[dict[str, Any], str | None]:
    settings = {name: value for name, value in raw.items() if name != "custom_host"}
    settings = rules.provider_settings(settings, "configurations", also=("custom_host",), provider=provider)
    host = rules.custom_host(raw["custom_host"], "configurations.custom_host") if raw.get("custom_host") else None
    return settings, host


def _in_configurations(setting: str) -> str:
    return f"configurations.{setting}"


# -- providers -------------------------------------------------------------------------------------
def create_provider(store: Store, request: Request) -> dict[str, Any]:
    body = request.body
    integration = store.get_provider(body["integration_id"])
    if integration is None or integration.kind != "integration":
        raise Invalid(f"integration_id: no integration {body['integration_id']!r} (create one: POST /v1/integrations)")
    record = store.create_provider(
        body.get("slug") or _new_slug(body["name"]), kind="provider", name=body["name"],
        integration_slug=integration.slug, allowed_models=body.get("allowed_models", ()), note=body.get("note"),
        usage_limits=body.get("usage_limits"), rate_limits=body.get("rate_limits"),
    )  # fmt: skip
    return _created(record, request)


def update_provider(store: Store, request: Request) -> dict[str, Any]:
    current = _existing(store, request.params["slug"], "provider")
    return _updated(store, current, request, render_provider, **_common_changes(request.body))


def render_provider(record: StoredProvider) -> dict[str, Any]:
    return {
        **_common(record, "provider"), "note": record.note, "integration_id": record.integration_slug,
        "ai_provider_id": record.provider, "masked_api_key": record.secret_hint, "custom_host": record.custom_host,
        "usage_limits": record.usage_limits, "rate_limits": record.rate_limits,
    }  # fmt: skip


# -- shared ----------------------------------------------------------------------------------------
def _common(record: StoredProvider, kind: str) -> dict[str, Any]:
    return {
        "id": record.slug, "slug": record.slug, "object": kind, "name": record.name, "status": "active",
        "allowed_models": list(record.allowed_models), "created_at": iso(record.created_at),
        "last_updated_at": iso(record.updated_at),
    }  # fmt: skip


def _common_changes(body: Mapping[str, Any]) -> dict[str, Any]:
    """Store arguments for the fields every kind shares; ``key`` becomes the new secret."""
    names = {"name": "name", "key": "secret", "note": "note", "custom_host": "custom_host",
             "allowed_models": "allowed_models", "usage_limits": "usage_limits", "rate_limits": "rate_limits",
             "reset_usage": "reset_usage"}
    return {ours: body[theirs] for theirs, ours in names.items() if theirs in body}


def _created(record: StoredProvider, request: Request) -> dict[str, Any]:
    log.info("%s %s created by %s", record.kind, record.slug, request.principal.key_id)
    return {"id": record.slug, "slug": record.slug, "object": record.kind}


def _updated(store: Store, current: StoredProvider, request: Request, render: Any, **changes: Any) -> dict[str, Any]:
    reset = bool(changes.pop("reset_usage", False))
    record = store.update_provider(current.slug, reset_usage=reset,
                                   **{name: changes.get(name, UNCHANGED) for name in _UPDATABLE})
    log.info("%s %s updated by %s", record.kind, record.slug, request.principal.key_id)
    return render(record)


_UPDATABLE = ("name", "secret", "custom_host", "settings", "allowed_models", "note", "usage_limits", "rate_limits")


def _existing(store: Store, slug: str, kind: str) -> StoredProvider:
    record = store.get_provider(slug)
    if record is None or record.kind != kind:
        raise NotFound(f"no {kind} {slug!r}")
    return record


def _checked_host(request: Request, current: str | None, new: str | None) -> str | None:
    """``custom_host`` decides where the stored secret goes: only an admin may set or change it, and only
    to a host that passes the SSRF rules or that the operator trusts."""
    if new == current:
        return new
    if not request.principal.can("admin"):
        raise Forbidden("only an admin key may set or change custom_host: it decides where the stored secret is sent")
    return rules.stored_host(new, "custom_host", request.host_rules) if new else None


def _new_slug(name: str) -> str:
    # Portkey: "If not passed, slug will be created by adding a random suffix to the name."
    base = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")[:50] or "provider"
    return f"{base}-{secrets.token_hex(3)}"


def _lister(kind: str, render: Any) -> Any:
    def list_kind(store: Store, request: Request) -> dict[str, Any]:
        records = collect(lambda **page: store.list_providers(kind=kind, **page))
        return listing(records, request.query, lambda record: _with_usage(render, record, request))

    return list_kind


def _getter(kind: str, render: Any) -> Any:
    def retrieve(store: Store, request: Request) -> dict[str, Any]:
        return _with_usage(render, _existing(store, request.params["slug"], kind), request)

    return retrieve


def _with_usage(render: Any, record: StoredProvider, request: Request) -> dict[str, Any]:
    usage = limit_usage(request, provider_rules(record.slug, record.rate_limits),
                        provider_token_limits(record.slug, record.rate_limits),
                        provider_budget(record.slug, record.usage_limits, record.usage_anchor))
    return {**render(record), "usage": usage}


def _deleter(kind: str) -> Any:
    def delete(store: Store, request: Request) -> dict[str, Any]:
        record = _existing(store, request.params["slug"], kind)
        store.delete_provider(record.slug)
        log.info("%s %s deleted by %s", kind, record.slug, request.principal.key_id)
        return {}

    return delete


def _resource(path: str, kind: str, tag: str, render: Any, schema: dict[str, Any], create: Any, update: Any,
              shapes: tuple[Shape, Shape]) -> tuple[Route, ...]:
    one = f"{path}/{{slug}}"
    return (
        Route("GET", path, "providers.read", _lister(kind, render), f"List {tag.lower()}", tag,
              listing_schema(schema), query=PAGING),
        Route("POST", path, "providers.write", create, f"Create a {kind.replace('-', ' ')}", tag, CREATED,
              body=shapes[0]),
        Route("GET", one, "providers.read", _getter(kind, render), f"Retrieve a {kind.replace('-', ' ')}", tag, schema),
        Route("PUT", one, "providers.write", update, f"Update a {kind.replace('-', ' ')}", tag, schema, body=shapes[1]),
        Route("DELETE", one, "providers.write", _deleter(kind), f"Delete a {kind.replace('-', ' ')}", tag, DELETED),
    )  # fmt: skip


ROUTES = (
    *_resource("/virtual-keys", "virtual-key", "Virtual keys", render_virtual_key, VIRTUAL_KEY,
               create_virtual_key, update_virtual_key, (VIRTUAL_KEY_CREATE, VIRTUAL_KEY_UPDATE)),
    *_resource("/integrations", "integration", "Integrations", render_integration, INTEGRATION,
               create_integration, update_integration, (INTEGRATION_CREATE, INTEGRATION_UPDATE)),
    *_resource("/providers", "provider", "Providers", render_provider, PROVIDER,
               create_provider, update_provider, (PROVIDER_CREATE, PROVIDER_UPDATE)),
)  # fmt: skip
