"""``modelport`` command line. Each ``serve`` flag is exactly one field of ``Settings``."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any, Sequence

import orjson

from ..settings import Settings, SettingsError
from ..store.base import StoreUnavailable
from ..store import StoreMissing, check_store_exists


class CommandError(Exception):
    """A problem with what the user asked for; printed as one line, without a traceback."""

    exit_code = 1


def existing_database(settings: Settings) -> None:
    """Refuse unless the gateway's store exists. Only ``serve`` creates one: any other command run with a
    mistyped ``--data-dir`` (or from another directory) would otherwise quietly start a new, empty gateway."""
    try:
        check_store_exists(settings)
    except StoreMissing as exc:
        raise CommandError(f"{exc}: pass the --data-dir the gateway runs with "
                           "(`modelport serve` creates it on first start)") from None  # fmt: skip


def key_value(text: str) -> tuple[str, str]:
    """The argument type of ``--setting KEY=VALUE`` and ``--metadata KEY=VALUE``."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return name, value


def print_error(message: str, as_json: bool) -> None:
    """One line on standard error; with ``--json``, in the API's error shape: ``{"error": {"message"}}``."""
    print(orjson.dumps({"error": {"message": message}}).decode() if as_json else f"error: {message}", file=sys.stderr)


def reader_went_away() -> int:
    """Exit code after a closed pipe (``modelport keys list | head -1``): the reader has all it wanted.

    Standard output is pointed at /dev/null first, or Python's own flush at exit fails a second time.
    """
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0

# flag → Settings field (and its help). Flags override MODELPORT_* variables and the config file.
SERVE_FLAGS: list[tuple[str, str, dict[str, Any]]] = [
    ("--host", "host", {"help": "interface to listen on (default 127.0.0.1)"}),
    ("--port", "port", {"type": int, "help": "port to listen on (default 8787)"}),
    ("--workers", "workers", {"type": int, "help": "worker processes (default 1)"}),
    ("--data-dir", "data_dir", {"help": "where SQLite data and key files live (default ./.modelport)"}),
    ("--log-level", "log_level", {"choices": ["critical", "error", "warning", "info", "debug"],
                                  "help": "server log level (default info)"}),
    ("--config", "config", {"help": "TOML config file (settings and [[providers]])"}),
    ("--public-url", "public_url", {"help": "the gateway's public origin, used in rewritten URLs"}),
]


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {field: getattr(args, field, None) for _, field, _ in SERVE_FLAGS}
    return Settings.load(overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelport", description="ModelPort: a fast, self-hosted AI gateway.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the gateway")
    for flag, field, options in SERVE_FLAGS:
        serve.add_argument(flag, dest=field, default=None, **options)
    serve.set_defaults(handler=_serve)
    from . import admin, logs

    admin.register(commands, settings_from_args)
    logs.register(commands, settings_from_args)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from ..server.bootstrap import bootstrap
    from ..server.supervisor import listen, serve

    settings = settings_from_args(args)
    sockets = listen(settings)  # first: a port in use is refused in one line, before any banner or key
    boot = bootstrap(settings)
    origin = f"http://{settings.host}:{settings.port}"
    print(f"ModelPort listening on {origin} ({settings.workers} worker{'s' if settings.workers > 1 else ''}, "
          f"{where_state_lives(settings)})")
    if boot.admin_key_created:
        print(f"Created the first admin key (shown once, also saved to {boot.admin_key_file}):\n  {boot.admin_key_created}")
    elif boot.admin_key_file:
        print(f"Admin key: in {boot.admin_key_file}")
    if boot.providers_synced:
        print(f"Providers from the config file: {', '.join('@' + s for s in boot.providers_synced)}")
    print(first_call(origin, settings, boot), flush=True)
    return serve(settings, sockets)


def where_state_lives(settings: Settings) -> str:
    if settings.database_url:
        from ..store.pg_connect import describe

        return f"state in PostgreSQL at {describe(settings.database_url)}, spill files in {settings.data_dir.resolve()}"
    return f"data in {settings.data_dir.resolve()}"


def first_call(origin: str, settings: Settings, boot: Any) -> str:
    """The banner's first call, pasteable into a shell as printed: the key read from where it lives, and a
    stored provider when there is one (its credential is used), else Replicate with the caller's own token."""
    from ..providers.registry import PROVIDERS

    note = ""
    if boot.admin_key_file is not None:
        key = f"$(cat {shlex.quote(str(boot.admin_key_file))})"
    elif settings.admin_key:
        key = "$MODELPORT_ADMIN_KEY"
    else:  # the admin key was made earlier and its file removed
        key, note = "$MODELPORT_KEY", "\n  (MODELPORT_KEY: a gateway key, e.g. from `modelport keys create my-app`)"
    stored = boot.callable_providers
    replicate = next((slug for slug, provider in stored if provider == "replicate"), None)
    listing = next((slug for slug, provider in stored if "models" in PROVIDERS[provider].unified), None)
    headers = [f"x-portkey-api-key: {key}"]
    if replicate is not None:
        what, path = f"Replicate through @{replicate}", "/models/replicate/hello-world"
        headers.append(f"x-portkey-provider: @{replicate}")
    elif listing is not None:
        what, path = f"the models of @{listing}", "/models"
        headers.append(f"x-portkey-provider: @{listing}")
    else:
        what, path = "Replicate, with your own token in REPLICATE_API_TOKEN", "/models/replicate/hello-world"
        headers += ["x-portkey-provider: replicate", "Authorization: Bearer $REPLICATE_API_TOKEN"]
    # Double quotes: the shell expands $(cat ...) and $REPLICATE_API_TOKEN, as it would not inside single ones.
    options = " ".join(f'-H "{header}"' for header in headers)
    return f"First call ({what}):\n  curl {origin}/v1{path} {options}{note}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (SettingsError, StoreUnavailable) as exc:  # a setting, or a database that cannot be used: one line
        print(f"modelport: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
