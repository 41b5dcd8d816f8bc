"""``/v1/configs``: saved routing configs, used as ``x-portkey-config: <id or slug>``.

Shapes follow Portkey (docs: "Create Config", "List Configs"; portkey-ai 2.3.4 ``types/configs_type.py``):
``is_default`` travels as 0/1 and create answers ``{"id", "slug", "object"}``. A config is validated
with the same code the gateway runs on every request (``rules.saved_config``, which runs
``gateway.configs.validate_config``), so a saved config cannot fail later for its shape.

A saved config may not carry ``api_key``: configs are stored as plain JSON, and a provider key belongs
in a virtual key (encrypted), which the config then names with ``virtual_key`` or ``provider: "@slug"``.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import NotFound
from ..store import CONFIG_STATUSES, UNCHANGED, Config, Store
from ..store.base import SLUG_PATTERN
from .router import Request, Route
from .rules import saved_config
from .schema import Shape, flag, ignored, mapping, text
from .wire import DELETED, PAGING, TIME, collect, iso, listing, listing_schema

log = logging.getLogger("modelport.control")

_DESCRIPTION = "The routing config: strategy, targets, retry, cache... (Portkey's config object)."
_is_default = flag("is_default", "Use this config for requests that send no x-portkey-config.")
CREATE = Shape((
    text("name", "A label for people.", required=True, max_length=200),
    mapping("config", _DESCRIPTION, required=True), _is_default,
    text("slug", "Our addition: a readable id for x-portkey-config (default: the config id).", max_length=64,
         pattern=SLUG_PATTERN),
    ignored("workspace_id"),
))  # fmt: skip
UPDATE = Shape((
    text("name", "A label for people.", max_length=200),
    mapping("config", _DESCRIPTION), _is_default,
    text("status", "Archived configs are kept, and listed as such.", enum=CONFIG_STATUSES),
    ignored("slug"), ignored("workspace_id"),
))  # fmt: skip

CONFIG = {
    "type": "object",
    "properties": {
        "id": {"type": "string"}, "slug": {"type": "string"}, "object": {"const": "config"},
        "name": {"type": "string"}, "config": {"type": "object"}, "is_default": {"enum": [0, 1]},
        "status": {"enum": list(CONFIG_STATUSES)}, "created_at": TIME, "last_updated_at": TIME,
    },
    "required": ["id", "slug", "object", "name", "config", "is_default", "status"],
}  # fmt: skip
CREATED = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "slug": {"type": "string"}, "object": {"const": "config"}},
    "required": ["id", "slug", "object"],
}


def create(store: Store, request: Request) -> dict[str, Any]:
    body = request.body
    saved_config(body["config"])
    record = store.create_config(body["name"], body["config"], slug=body.get("slug"),
                                 is_default=body.get("is_default", False))  # fmt: skip
    log.info("config %s created by %s", record.id, request.principal.key_id)
    return {"id": record.id, "slug": record.slug, "object": "config"}


def list_configs(store: Store, request: Request) -> dict[str, Any]:
    return listing(collect(store.list_configs), request.query, render)


def retrieve(store: Store, request: Request) -> dict[str, Any]:
    return render(_existing(store, request.params["ref"]))


def update(store: Store, request: Request) -> dict[str, Any]:
    current = _existing(store, request.params["ref"])
    body = request.body
    if "config" in body:
        saved_config(body["config"])
    record = store.update_config(current.id, **{name: body.get(name, UNCHANGED)
                                                for name in ("name", "config", "status", "is_default")})  # fmt: skip
    log.info("config %s updated by %s", record.id, request.principal.key_id)
    return render(record)


def delete(store: Store, request: Request) -> dict[str, Any]:
    current = _existing(store, request.params["ref"])
    store.delete_config(current.id)
    log.info("config %s deleted by %s", current.id, request.principal.key_id)
    return {}


def render(record: Config) -> dict[str, Any]:
    return {
        "id": record.id, "slug": record.slug, "object": "config", "name": record.name,
        "config": dict(record.config), "is_default": int(record.is_default), "status": record.status,
        "created_at": iso(record.created_at), "last_updated_at": iso(record.updated_at),
    }  # fmt: skip


def _existing(store: Store, ref: str) -> Config:
    record = store.get_config(ref)
    if record is None:
        raise NotFound(f"no config {ref!r}")
    return record


ROUTES = (
    Route("GET", "/configs", "configs.read", list_configs, "List saved configs", "Configs",
          listing_schema(CONFIG), query=PAGING),
    Route("POST", "/configs", "configs.write", create, "Save a config", "Configs", CREATED, body=CREATE),
    Route("GET", "/configs/{ref}", "configs.read", retrieve, "Retrieve a config by id or slug", "Configs", CONFIG),
    Route("PUT", "/configs/{ref}", "configs.write", update, "Update a config", "Configs", CONFIG, body=UPDATE),
    Route("DELETE", "/configs/{ref}", "configs.write", delete, "Delete a config", "Configs", DELETED),
)  # fmt: skip
