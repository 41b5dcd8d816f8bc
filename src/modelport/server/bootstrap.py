"""Things done once per data directory before workers start: the first admin key, declared providers.

Run by ``modelport serve`` in the parent process, so N workers never race to create the admin key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..settings import DeclaredProvider, Settings, SettingsError
from ..store import Conflict, Store, open_store

ADMIN_KEY_FILE = "admin.key"


@dataclass(frozen=True, slots=True)
class Bootstrapped:
    admin_key_created: str | None  # the plaintext, only when this run generated it (shown once)
    admin_key_file: Path | None
    providers_synced: tuple[str, ...]
    callable_providers: tuple[tuple[str, str], ...] = ()  # (slug, provider id) of stored providers callers may name


def bootstrap(settings: Settings) -> Bootstrapped:
    store = open_store(settings)
    try:
        created, key_file = ensure_admin_key(store, settings)
        synced = sync_declared_providers(store, settings)
        # The first page is plenty: the banner names one of them.
        callable_ = tuple((p.slug, p.provider) for p in store.list_providers().items if p.kind != "integration")
    finally:
        store.close()
    return Bootstrapped(created, key_file, synced, callable_)


def ensure_admin_key(store: Store, settings: Settings) -> tuple[str | None, Path | None]:
    from ..keys import hash_api_key

    if settings.admin_key:
        if not settings.admin_key.startswith("mp-"):
            raise SettingsError("MODELPORT_ADMIN_KEY must start with 'mp-' (generate one with `modelport keys create`)")
        if store.get_api_key_by_hash(hash_api_key(settings.admin_key)) is None:
            try:
                store.create_api_key("admin (MODELPORT_ADMIN_KEY)", scopes=("admin",), token=settings.admin_key)
            except Conflict:
                pass  # another node sharing the database created it first
            except ValueError as exc:
                raise SettingsError(f"MODELPORT_ADMIN_KEY: {exc}") from None
        return None, None
    if _has_admin_key(store):
        path = settings.data_dir / ADMIN_KEY_FILE
        return None, path if path.exists() else None
    _, plaintext = store.create_api_key("admin", scopes=("admin",))
    path = settings.data_dir / ADMIN_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(plaintext + "\n")
    return plaintext, path


def _has_admin_key(store: Store) -> bool:
    cursor = None
    while True:
        page = store.list_api_keys(limit=200, cursor=cursor)
        if any("admin" in key.scopes and key.revoked_at is None for key in page.items):
            return True
        if page.next_cursor is None:
            return False
        cursor = page.next_cursor


def sync_declared_providers(store: Store, settings: Settings) -> tuple[str, ...]:
    """Create or update the providers declared in the config file (secrets from the environment).

    Checked by the control plane's rules (``control/rules.py``), as the API and the CLI are.
    """
    synced = []
    for declared in settings.providers:
        checked = _checked_declaration(declared)
        fields = dict(name=declared.name or declared.slug, secret=_declared_secret(declared), **checked)
        try:
            if store.get_provider(declared.slug) is None:
                store.create_provider(declared.slug, kind="provider", provider=declared.provider, **fields)
            else:
                store.update_provider(declared.slug, **fields)
        except Conflict:  # another node sharing the database created it between the look and the create
            store.update_provider(declared.slug, **fields)
        synced.append(declared.slug)
    return tuple(synced)


def _checked_declaration(declared: DeclaredProvider) -> dict[str, Any]:
    from ..control import rules
    from ..errors import BadRequest

    try:
        rules.provider_id(declared.provider, "provider")
        provider_settings = rules.provider_settings(dict(declared.settings), "settings", provider=declared.provider)
        host = rules.custom_host(declared.custom_host, "custom_host") if declared.custom_host else None
        rules.require_settings(declared.provider, provider_settings, host, name_of=lambda name: f"settings.{name}")
    except BadRequest as exc:
        raise SettingsError(f"config file: provider '{declared.slug}': {exc.message}") from None
    return {"custom_host": host, "settings": provider_settings}


def _declared_secret(declared: DeclaredProvider) -> str | None:
    if not declared.secret_env:
        return None
    secret = os.environ.get(declared.secret_env)
    if not secret:
        raise SettingsError(
            f"config file: provider '{declared.slug}' takes its secret from ${declared.secret_env}, which is not set"
        )
    return secret
