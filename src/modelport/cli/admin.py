"""Admin commands: ``keys``, ``providers``, ``configs`` and ``vault``, working directly on the store.

They open the store themselves, so they work whether or not a gateway is running; a running gateway
sees each change on its next request (``Store.data_version``). They never create a store: only
``modelport serve`` initialises a data directory, so a mistyped ``--data-dir`` is refused, as by
``logs``. Every command prints an aligned table or record for people, or JSON with ``--json`` for
scripts (a list as ``{"object": "list", "data": [...]}``, as the API and ``logs list`` print it; an
error as ``{"error": {"message": ...}}`` on standard error). A refused input exits 2 (as argparse
does), any other failure 1.

A command that takes a record finds it as people name it: a key by id or name, a provider by slug,
``@slug`` or name, a config by id, slug or name; a name two records share is refused with both
listed, never guessed.

Provider secrets are read from an environment variable (``--secret-env NAME``), a no-echo prompt, or
standard input, never from an argument: arguments end up in shell history and in ``ps`` output.

``register(subparsers, settings_factory)`` adds the commands to the main ``modelport`` parser; each
leaf parser gets ``handler(args) -> exit code`` as a default. Each command also takes ``--data-dir``
and ``--config``, the ``serve`` flags that say where the store and the master key are.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import orjson

from ..control import rules
from ..control.schema import rate_limits, usage_limits
from ..errors import BadRequest
from ..hosts import HostRules
from ..gateway.limits import Limiter, key_rules
from ..store import PROVIDER_KINDS, SCOPES, ApiKey, Config, Page, StoredProvider, StoreError, open_store
from ..store.base import Store
from ..store.counters import open_counters
from ..usage.limits import key_budget, key_token_limits
from ..vault import VaultError, generate_master_key, key_id, parse_master_key
from . import CommandError, existing_database, key_value, print_error, reader_went_away
from .output import Output, public_fields, when

KEY_REF = "the key's id (key_...) or its name, if no other key has it"
PROVIDER_REF = "the slug (with or without @) or the name, if no other provider has it"
CONFIG_REF = "the config's id (pc-...), its slug or its name, if no other config has it"

T = TypeVar("T")
SettingsFactory = Callable[[argparse.Namespace], Any]
Command = Callable[[argparse.Namespace, Store, "Output"], None]


class InvalidInput(CommandError):
    """Input refused before anything is stored; exit code 2, as argparse's own refusals."""

    exit_code = 2


def register(subparsers: Any, settings_factory: SettingsFactory) -> None:
    """Add ``keys``, ``providers``, ``configs`` and ``vault`` to a ``modelport`` parser's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    common.add_argument("--data-dir", help="where the database and key file live (as for serve)")
    common.add_argument("--config", type=Path, help="TOML config file (as for serve)")

    def leaf(group: Any, name: str, command: Command, help: str) -> argparse.ArgumentParser:
        parser = group.add_parser(name, parents=[common], help=help, description=help)
        parser.set_defaults(handler=lambda args: _run(command, args, settings_factory))
        return parser

    keys = _group(subparsers, "keys", "gateway API keys")
    p = leaf(keys, "create", keys_create, "create a key (its secret is printed once)")
    _name_arguments(p)
    p.add_argument("--scope", action="append", dest="scopes", choices=SCOPES, help="repeatable; default: inference")
    p.add_argument(
        "--provider", action="append", dest="providers", default=[], metavar="ID_OR_@SLUG",
        help="restrict the key to these providers (repeatable; default: all)",
    )  # fmt: skip
    p.add_argument("--expires-in", type=_duration, metavar="DURATION", help="e.g. 90d, 12h, 30m")
    p.add_argument("--metadata", type=_json_object, default=None, help="JSON object merged into request metadata")
    _limit_arguments(p, "key", default=None)
    p = leaf(keys, "update", keys_update, "change a key's name or limits; what is not given stays")
    p.add_argument("key", metavar="ID_OR_NAME", help=KEY_REF)
    p.add_argument("--name", help="a new label for people")
    _limit_arguments(p, "key", default=argparse.SUPPRESS)
    p.add_argument("--reset-usage", action="store_true", help="start the key's budget afresh (rate windows are kept)")
    p = leaf(keys, "usage", keys_usage, "where each key stands against its rate limits and budget, on this node")
    p.add_argument("key", metavar="ID_OR_NAME", nargs="?", help=f"one key ({KEY_REF}); default: every key with limits")
    leaf(keys, "list", keys_list, "list keys")
    for name, command, text in (
        ("revoke", keys_revoke, "revoke a key: it stops working at once, everywhere"),
        ("rotate", keys_rotate, "give a key a new secret (printed once); the old one stops working"),
        ("delete", keys_delete, "delete a key"),
    ):
        leaf(keys, name, command, text).add_argument("key", metavar="ID_OR_NAME", help=KEY_REF)

    providers = _group(subparsers, "providers", "stored provider credentials (used as @slug)")
    p = leaf(providers, "add", providers_add, "store a provider credential")
    p.add_argument("slug", help="how callers name it: x-portkey-provider: @SLUG (a-z, 0-9, - and _)")
    p.add_argument("--provider", help="provider id, e.g. replicate (inherited from --integration if omitted)")
    p.add_argument("--kind", choices=PROVIDER_KINDS, default="provider",
                   help="Portkey's record type (default provider); an integration lends its secret to providers")
    p.add_argument("--name", help="a label for people (default: the slug)")
    p.add_argument("--integration", metavar="SLUG", help="inherit secret and settings from this integration")
    p.add_argument("--custom-host", metavar="URL", help="upstream base URL instead of the provider's own")
    p.add_argument("--setting", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                   help=f"a provider setting, e.g. resource_name=my-res (repeatable; {', '.join(rules.STORED_SETTINGS)})")
    p.add_argument("--model", action="append", dest="models", default=[], metavar="MODEL",
                   help="allowed model (repeatable; default: all)")
    p.add_argument("--note", help="free text")
    _limit_arguments(p, "provider", default=None)
    secret = p.add_mutually_exclusive_group()
    secret.add_argument("--secret-env", metavar="NAME", help="read the secret from this environment variable")
    secret.add_argument("--no-secret", action="store_true", help="store no secret (e.g. a local model server)")
    p = leaf(providers, "update", providers_update, "change a stored provider; what is not given stays")
    p.add_argument("provider_ref", metavar="SLUG", help=PROVIDER_REF)
    p.add_argument("--name", help="a new label for people")
    p.add_argument("--secret-env", metavar="NAME", help="the new secret, from this environment variable")
    p.add_argument("--custom-host", metavar="URL", help="a new upstream base URL ('' removes it)")
    p.add_argument("--setting", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                   help="set one setting, KEY= removes it (repeatable; the others stay)")
    models = p.add_mutually_exclusive_group()
    models.add_argument("--model", action="append", dest="models", metavar="MODEL",
                        help="allowed model (repeatable; replaces the list)")
    models.add_argument("--all-models", action="store_true", help="allow every model again")
    p.add_argument("--note", help="new free text ('' removes it)")
    _limit_arguments(p, "provider", default=argparse.SUPPRESS)
    p.add_argument("--reset-usage", action="store_true", help="start the budget afresh (rate windows are kept)")
    leaf(providers, "list", providers_list, "list stored providers")
    p = leaf(providers, "show", providers_show, "show one stored provider (never its secret)")
    p.add_argument("provider_ref", metavar="SLUG", help=PROVIDER_REF)
    p = leaf(providers, "remove", providers_remove, "remove a stored provider")
    p.add_argument("provider_ref", metavar="SLUG", help=PROVIDER_REF)

    configs = _group(subparsers, "configs", "saved gateway configs (x-portkey-config: <id or slug>)")
    p = leaf(configs, "create", configs_create, "save a config")
    _name_arguments(p)
    p.add_argument("--slug", help="a readable id for x-portkey-config (default: the generated id)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, help="JSON file with the config ('-' for standard input)")
    source.add_argument("--data", type=_json_object, metavar="JSON", help="the config as JSON text")
    p.add_argument("--default", action="store_true", help="make it the default config")
    leaf(configs, "list", configs_list, "list saved configs")
    leaf(configs, "show", configs_show, "show a config").add_argument("ref", metavar="ID_OR_SLUG", help=CONFIG_REF)
    leaf(configs, "delete", configs_delete, "delete a config").add_argument("ref", metavar="ID_OR_SLUG",
                                                                          help=CONFIG_REF)

    vault = _group(subparsers, "vault", "the master key that encrypts provider secrets")
    p = leaf(vault, "rotate", vault_rotate, "re-encrypt every stored secret under a new master key")
    p.add_argument("--new-key-env", metavar="NAME", help="take the new key from this variable (default: generate)")

    text = "apply the PostgreSQL schema's migrations (safe to run twice, and from several nodes at once)"
    p = subparsers.add_parser("migrate", help=text, description=text)
    p.add_argument("--database-url", metavar="URL",
                   help="postgresql://user@host:port/database (default: MODELPORT_DATABASE_URL)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(handler=migrate)


def _limit_arguments(parser: argparse.ArgumentParser, whose: str, default: Any) -> None:
    """--rate-limits and --usage-limits, checked by the API's own rules (docs/limits.md)."""
    again = " (null removes them)" if default is argparse.SUPPRESS else ""
    parser.add_argument("--rate-limits", type=_json_value, metavar="JSON", default=default,
                        help=f"the {whose}'s rate limits, e.g. '{{\"type\": \"requests\", \"unit\": \"rpm\", "
                             f"\"value\": 60}}' (or a list; type tokens limits tokens){again}")
    parser.add_argument("--usage-limits", type=_json_value, metavar="JSON", default=default,
                        help=f"the {whose}'s budget (Portkey UsageLimits), e.g. '{{\"credit_limit\": 50, "
                             f"\"periodic_reset\": \"monthly\"}}'{again}")


# -- keys ----------------------------------------------------------------------------------------
def keys_create(args: argparse.Namespace, store: Store, out: Output) -> None:
    expires_at = datetime.now(timezone.utc) + args.expires_in if args.expires_in else None
    record, token = store.create_api_key(
        _given_name(args),
        scopes=args.scopes or ("inference",),
        allowed_providers=rules.allowed_providers(args.providers, store, "--provider"),
        expires_at=expires_at,
        metadata=rules.key_metadata(args.metadata, "--metadata") if args.metadata is not None else None,
        **_limits(args),
    )
    _print_new_secret(out, record, token, "Created")


def keys_update(args: argparse.Namespace, store: Store, out: Output) -> None:
    key = _key(store, args.key)
    changes = _limits(args)
    if args.name is not None:
        changes["name"] = args.name
    out.record(store.update_api_key(key.id, reset_usage=args.reset_usage, **changes), f"Updated {key.id} ({key.name}).")


def keys_usage(args: argparse.Namespace, store: Store, out: Output) -> None:
    keys = [_key(store, args.key)] if args.key else list(_all(store.list_api_keys))
    limiter = Limiter(open_counters(args.settings))
    rows = []
    for key in keys:
        usage = limiter.usage(key_rules(key.id, key.name, key.rate_limits))
        usage += limiter.token_usage(key_token_limits(key.id, key.name, key.rate_limits))
        budget = limiter.budget_usage(key_budget(key.id, key.name, key.usage_limits, key.usage_anchor))
        rows += [{"key_id": key.id, "name": key.name, **row} for row in usage]
        if budget is not None:
            unit = "USD" if budget["type"] == "cost" else "tokens"
            rows.append({"key_id": key.id, "name": key.name, "type": f"budget ({budget['type']})",
                         "unit": budget["periodic_reset"] or (f"{budget['periodic_reset_days']}d"
                                                              if budget["periodic_reset_days"] else "for good"),
                         "value": f"{budget['credit_limit']} {unit}", "used": budget["used"],
                         "remaining": budget["remaining"], "resets_at": budget["period_ends_at"]})
    out.table(rows, {"KEY": lambda r: r["key_id"], "NAME": lambda r: r["name"], "LIMIT": lambda r: r["type"],
                     "PER": lambda r: r["unit"], "VALUE": lambda r: r["value"], "USED": lambda r: r["used"],
                     "LEFT": lambda r: r["remaining"], "RESETS": lambda r: r["resets_at"]})


def keys_list(args: argparse.Namespace, store: Store, out: Output) -> None:
    keys = list(_all(store.list_api_keys))
    out.table(
        keys,
        {
            "ID": lambda k: k.id,
            "NAME": lambda k: k.name,
            "PREFIX": lambda k: k.prefix + "…",
            "SCOPES": lambda k: ",".join(k.scopes),
            "PROVIDERS": lambda k: ",".join(k.allowed_providers) or "all",
            "STATUS": _key_status,
            "EXPIRES": lambda k: when(k.expires_at),
            "LAST USED": lambda k: when(k.last_used_at),
        },
    )


def keys_revoke(args: argparse.Namespace, store: Store, out: Output) -> None:
    key = _key(store, args.key)
    out.record(store.revoke_api_key(key.id), f"Revoked {key.id} ({key.name}).")


def keys_rotate(args: argparse.Namespace, store: Store, out: Output) -> None:
    record, token = store.rotate_api_key(_key(store, args.key).id)
    _print_new_secret(out, record, token, "Rotated")


def keys_delete(args: argparse.Namespace, store: Store, out: Output) -> None:
    key = _key(store, args.key)
    store.delete_api_key(key.id)
    out.done({"deleted": key.id}, f"Deleted {key.id} ({key.name}).")


def _key(store: Store, ref: str) -> ApiKey:
    return _by_id_or_name(store.get_api_key(ref), store.list_api_keys, ref, f"no API key with the id or name {ref!r}",
                          "keys", lambda key: f"{key.id} ({_key_status(key)})", "give the id")  # fmt: skip


def _print_new_secret(out: Output, record: ApiKey, token: str, verb: str) -> None:
    if out.json:
        out.emit({**public_fields(record), "secret": token})
        return
    out.line(f"{verb} key {record.id} ({record.name}). Copy the secret now; it is not shown again:")
    out.line("")
    out.line(f"    {token}")


def _key_status(key: ApiKey) -> str:
    if key.revoked_at is not None:
        return "revoked"
    return "active" if key.is_active() else "expired"


# -- providers -----------------------------------------------------------------------------------
def providers_add(args: argparse.Namespace, store: Store, out: Output) -> None:
    # The control plane's rules (control/rules.py), checked before the secret is asked for.
    if args.provider is not None:
        rules.provider_id(args.provider, "--provider")
    settings = rules.provider_settings(dict(args.setting), "--setting", provider=args.provider)
    host = rules.stored_host(args.custom_host, "--custom-host", args.host_rules) if args.custom_host else None
    if args.provider is not None and args.integration is None:
        _require_settings(args.provider, settings, host)
    record = store.create_provider(
        args.slug,
        kind=args.kind,
        provider=args.provider,
        name=args.name,
        secret=_read_secret(args),
        custom_host=host,
        settings=settings,
        allowed_models=args.models,
        note=args.note,
        integration_slug=args.integration,
        **_limits(args),
    )
    out.record(record, f"Stored {record.kind} @{record.slug} ({record.provider}).")


def providers_update(args: argparse.Namespace, store: Store, out: Output) -> None:
    current = _provider(store, args.provider_ref)
    changes: dict[str, Any] = _limits(args)
    if args.name is not None:
        changes["name"] = args.name
    if args.note is not None:
        changes["note"] = args.note or None
    if args.models or args.all_models:
        changes["allowed_models"] = args.models or []
    host = current.custom_host
    if args.custom_host is not None:
        host = changes["custom_host"] = (rules.stored_host(args.custom_host, "--custom-host", args.host_rules)
                                         if args.custom_host else None)  # fmt: skip
    settings = dict(current.settings)
    if args.setting:
        for name, value in args.setting:
            settings[name] = value or None
        settings = changes["settings"] = rules.provider_settings(settings, "--setting", provider=current.provider)
    if current.integration_slug is None:  # one on an integration takes the integration's settings
        _require_settings(current.provider, settings, host)
    if args.secret_env:
        changes["secret"] = _secret_from_env(args.secret_env)
    if args.reset_usage:
        changes["reset_usage"] = True
    if not changes:
        raise InvalidInput("nothing to change: give at least one option (see modelport providers update --help)")
    record = store.update_provider(current.slug, **changes)
    out.record(record, f"Updated {record.kind} @{record.slug}.")


def providers_list(args: argparse.Namespace, store: Store, out: Output) -> None:
    out.table(
        list(_all(store.list_providers)),
        {
            "SLUG": lambda p: p.slug,
            "KIND": lambda p: p.kind,
            "PROVIDER": lambda p: p.provider,
            "SECRET": lambda p: p.secret_hint or ("inherited" if p.integration_slug else "none"),
            "INTEGRATION": lambda p: p.integration_slug or "",
            "CUSTOM HOST": lambda p: p.custom_host or "",
            "MODELS": lambda p: ",".join(p.allowed_models) or "all",
        },
    )


def providers_show(args: argparse.Namespace, store: Store, out: Output) -> None:
    out.record(_provider(store, args.provider_ref))


def providers_remove(args: argparse.Namespace, store: Store, out: Output) -> None:
    record = _provider(store, args.provider_ref)
    store.delete_provider(record.slug)
    out.done({"deleted": record.slug}, f"Removed @{record.slug}.")


def _provider(store: Store, ref: str) -> StoredProvider:
    return _by_id_or_name(store.get_provider(ref.removeprefix("@")), store.list_providers, ref,
                          f"no stored provider with the slug or name {ref!r}", "providers",
                          lambda provider: f"@{provider.slug}", "give the slug")  # fmt: skip


def _require_settings(provider: str, settings: dict[str, Any], host: str | None) -> None:
    rules.require_settings(provider, settings, host, name_of=lambda name: f"--setting {name}=…",
                           host_field="--custom-host")  # fmt: skip


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    """The limits given (``update`` leaves absent ones out), checked as the API checks them."""
    given = {}
    for name, field in (("usage_limits", usage_limits()), ("rate_limits", rate_limits())):
        if hasattr(args, name):
            value = getattr(args, name)
            given[name] = None if value is None else field.convert(value, f"--{name.replace('_', '-')}")
    return given


def _secret_from_env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise CommandError(f"environment variable {name} is not set or empty")
    return value


def _read_secret(args: argparse.Namespace) -> str | None:
    if args.secret_env:
        return _secret_from_env(args.secret_env)
    if args.no_secret or args.integration:
        return None
    if sys.stdin.isatty():
        value = getpass.getpass(f"Secret for @{args.slug} (input hidden): ")
    else:
        value = sys.stdin.readline().rstrip("\r\n")  # piped: `printf %s "$TOKEN" | modelport providers add ...`
    if not value:
        raise CommandError("no secret given (use --no-secret to store none)")
    return value


# -- configs -------------------------------------------------------------------------------------
def configs_create(args: argparse.Namespace, store: Store, out: Output) -> None:
    try:
        config = args.data if args.file is None else _json_object(_read_text(args.file))
    except argparse.ArgumentTypeError as exc:
        raise CommandError(f"{args.file}: {exc}") from None
    rules.saved_config(config)
    record = store.create_config(_given_name(args), config, slug=args.slug, is_default=args.default)
    out.record(record, f"Saved config {record.id} (slug {record.slug}).")


def configs_list(args: argparse.Namespace, store: Store, out: Output) -> None:
    out.table(
        list(_all(store.list_configs)),
        {
            "ID": lambda c: c.id,
            "SLUG": lambda c: c.slug,
            "NAME": lambda c: c.name,
            "DEFAULT": lambda c: "yes" if c.is_default else "",
            "STATUS": lambda c: c.status,
            "UPDATED": lambda c: when(c.updated_at),
        },
    )


def configs_show(args: argparse.Namespace, store: Store, out: Output) -> None:
    out.record(_config(store, args.ref))


def configs_delete(args: argparse.Namespace, store: Store, out: Output) -> None:
    record = _config(store, args.ref)
    store.delete_config(record.id)
    out.done({"deleted": record.id}, f"Deleted config {record.id} ({record.name}).")


def _config(store: Store, ref: str) -> Config:
    return _by_id_or_name(store.get_config(ref), store.list_configs, ref, f"no config with the id, slug or name {ref!r}",
                          "configs", lambda config: f"{config.id} (slug {config.slug})", "give the id or slug")  # fmt: skip


def _read_text(path: Path) -> str:
    try:
        return sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None


# -- vault ---------------------------------------------------------------------------------------
def vault_rotate(args: argparse.Namespace, store: Store, out: Output) -> None:
    generated = None
    if args.new_key_env:
        text = os.environ.get(args.new_key_env, "")
        if not text:
            raise CommandError(f"environment variable {args.new_key_env} is not set or empty")
        new_key = parse_master_key(text)
    else:
        generated = generate_master_key()
        new_key = parse_master_key(generated)
    vault = store.vault
    from_file = vault.key_file is not None
    count = vault.rotate(new_key, store)
    result: dict[str, Any] = {"reencrypted": count, "key_id": key_id(new_key), "key_file": str(vault.key_file or "")}
    if from_file:
        out.done(result, f"Re-encrypted {count} secret(s) under key {key_id(new_key)}; updated {vault.key_file}.")
        return
    # The key came from MODELPORT_MASTER_KEY, which this process cannot change: hand the new key over.
    if generated is not None:
        result["master_key"] = generated
    source = generated if generated is not None else f"the value of {args.new_key_env}"
    out.done(
        result,
        f"Re-encrypted {count} secret(s) under key {key_id(new_key)}.\n"
        f"Set MODELPORT_MASTER_KEY to {source} before restarting ModelPort.",
    )


def migrate(args: argparse.Namespace) -> int:
    """``modelport migrate``. Not through Settings: they refuse ``database_url`` until a node can run on
    PostgreSQL (the logs are not there yet); the database is all this command needs."""
    out = Output(json=args.json)
    url = args.database_url or os.environ.get("MODELPORT_DATABASE_URL", "")
    if not url:
        print_error("give the database: --database-url postgresql://... or MODELPORT_DATABASE_URL", out.json)
        return InvalidInput.exit_code
    try:
        from ..store.pg_connect import describe, migrate_database
    except ImportError:
        print_error("PostgreSQL support is not installed: pip install 'modelport[postgres]'", out.json)
        return 1
    try:
        applied, version = migrate_database(url)
    except StoreError as exc:
        print_error(str(exc), out.json)
        return 1
    where = describe(url)
    if applied:
        message = f"Applied migration{'s' if len(applied) > 1 else ''} {', '.join(map(str, applied))} to {where}; schema version {version}."
    else:
        message = f"Nothing to do: {where} is at schema version {version}."
    out.done({"applied": applied, "version": version, "database": where}, message)
    return 0


# -- running a command ---------------------------------------------------------------------------
def _run(command: Command, args: argparse.Namespace, settings_factory: SettingsFactory) -> int:
    out = Output(json=args.json)
    try:
        settings = settings_factory(args)
        existing_database(settings)
        args.host_rules = HostRules.from_settings(settings)  # the gateway's: trusted_hosts, allow_private_hosts
        args.settings = settings
        store = open_store(settings)
        try:
            command(args, store, out)
        finally:
            store.close()
    except CommandError as exc:
        print_error(str(exc), out.json)
        return exc.exit_code
    except BadRequest as exc:  # refused by the control plane's rules, as the API refuses it with a 400
        print_error(exc.message, out.json)
        return InvalidInput.exit_code
    except (StoreError, VaultError, ValueError) as exc:
        print_error(str(exc), out.json)
        return 1
    except BrokenPipeError:  # `modelport keys list | head -1`
        return reader_went_away()
    return 0


def _by_id_or_name(found: T | None, lister: Callable[..., Page[T]], ref: str, none: str, plural: str,
                   label: Callable[[T], str], choose: str) -> T:  # fmt: skip
    """The record ``found`` by its id or slug; else the one record named ``ref``."""
    if found is not None:
        return found
    named = [record for record in _all(lister) if getattr(record, "name", None) == ref]
    return _the_one(named, none, f"{plural} are named {ref!r}", label, choose)


def _the_one(matches: list[T], none: str, several: str, label: Callable[[T], str], choose: str) -> T:
    """The one record a name found; a name two records share is refused, saying which they are."""
    if not matches:
        raise CommandError(none)
    if len(matches) > 1:
        raise CommandError(f"{len(matches)} {several}: {', '.join(map(label, matches))}; {choose}")
    return matches[0]


def _name_arguments(parser: argparse.ArgumentParser) -> None:
    """A new record's name, positionally (``keys create my-app``, as the README shows) or with ``--name``."""
    parser.add_argument("name", nargs="?", help="a label for people (or give it with --name)")
    parser.add_argument("--name", dest="name_option", metavar="NAME", help="the same label, as an option")


def _given_name(args: argparse.Namespace) -> str:
    if args.name is None and args.name_option is None:
        raise InvalidInput("give a name: positionally or with --name")
    if args.name is not None and args.name_option is not None and args.name != args.name_option:
        raise InvalidInput(f"two different names given ({args.name!r} and --name {args.name_option!r}); give one")
    return args.name if args.name is not None else args.name_option


def _group(subparsers: Any, name: str, help: str) -> Any:
    parser = subparsers.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def _all(list_page: Callable[..., Page[Any]]) -> Iterator[Any]:
    cursor = None
    while True:
        page = list_page(cursor=cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


# -- argument types ------------------------------------------------------------------------------
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90d, 12h, 30m or 45s")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _json_value(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def _json_object(text: str) -> dict[str, Any]:
    value = _json_value(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value
