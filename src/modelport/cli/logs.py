"""``modelport logs``: list, follow, show and export request logs, reading the store directly.

It opens the database itself, so it works whether or not a gateway is running, and prints what the
HTTP API returns (``GET /v1/logs``, ``/v1/logs/{id}``, ``/v1/logs/export``): the same rows, the same
filters, the same export files. Tables for people by default; ``--json`` for scripts.

    modelport logs list   [filters] [--limit N] [--cursor C] [--json]
    modelport logs tail   [filters] [-n N] [-f] [--json]
    modelport logs show   LOG_ID [--json]
    modelport logs export [filters] [--format jsonl|csv] [--full] [-o FILE]
    modelport logs predictions [PREDICTION_ID] [prediction filters] [--limit N] [--cursor C] [--json]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

import orjson

from ..control.logs import FULL_COLUMNS, csv_chunks, epoch_ms, jsonl_chunks, status_code
from ..control.schema import Invalid
from ..logs import predictions as view
from ..providers.replicate.pricing import PREDICTION_STATUSES
from ..ids import new_time_ordered_id
from ..store import LogFilter, LogStore, PredictionFilter, StoreUnavailable, open_log_store
from ..store.log_base import MAX_LIMIT, SUMMARY_FIELDS
from . import CommandError, existing_database, key_value, print_error, reader_went_away

SettingsFactory = Callable[[argparse.Namespace], Any]
Command = Callable[[argparse.Namespace, LogStore, LogFilter], None]

FOLLOW_INTERVAL = 0.5  # seconds between polls in ``tail -f``
# The log writer inserts in batches (every few hundred ms, later while it spills to disk), so a record
# can land after a newer one was printed; each poll looks back this far and skips ids already shown.
LOOK_BACK_MS = 10_000


def register(subparsers: Any, settings_factory: SettingsFactory) -> None:
    """Add ``logs`` (list, tail, show, export) to a ``modelport`` parser's subparsers."""
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--data-dir", help="where the database lives (as for serve)")
    store.add_argument("--config", type=Path, help="TOML config file (as for serve)")
    filters = _filter_options()

    group = subparsers.add_parser("logs", help="request logs: list, follow, show, export; predictions",
                                  description="Request logs, read straight from the gateway's database.")
    commands = group.add_subparsers(dest="logs_command", required=True, metavar="COMMAND")

    def leaf(name: str, command: Command, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, parents=[store, *parents], help=help, description=help)
        parser.set_defaults(handler=lambda args: _run(command, args, settings_factory))
        return parser

    p = leaf("list", list_logs, "list logs, newest first", filters)
    p.add_argument("--limit", type=int, default=50, help=f"records per page (1-{MAX_LIMIT}, default 50)")
    p.add_argument("--cursor", help="next_cursor printed by the previous page")
    p.add_argument("--json", action="store_true", help="print the page as JSON, as GET /v1/logs does")
    p = leaf("tail", tail_logs, "print the latest logs, oldest first; -f keeps printing new ones", filters)
    p.add_argument("-n", "--lines", type=int, default=20, help="how many of the latest to print first (default 20)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new records until interrupted")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p = leaf("show", show_log, "show one record: headers, bodies, attempts, usage, cost, feedback")
    p.add_argument("log_id", help="a log id as logs list prints it (log_...)")
    p.add_argument("--json", action="store_true", help="print the record as JSON, as GET /v1/logs/{id} does")
    p = leaf("export", export_logs, "write matching logs as JSON lines or CSV", filters)
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="JSON lines (default) or CSV")
    p.add_argument("--full", action="store_true", help="also headers, bodies, attempts and usage")
    p.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")
    p = leaf("predictions", predictions, "Replicate predictions, newest first, or one with its lifecycle",
             _prediction_filter_options())
    p.add_argument("prediction_id", nargs="?", help="show this prediction: its cost and every log record of it")
    p.add_argument("--limit", type=int, default=50, help=f"predictions per page (1-{MAX_LIMIT}, default 50)")
    p.add_argument("--cursor", help="next_cursor printed by the previous page")
    p.add_argument("--json", action="store_true",
                   help="print JSON, as GET /v1/logs/predictions (or /v1/logs/predictions/{id}) does")


def _filter_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("filters")
    when = "ISO 8601, epoch ms, or a time ago such as 15m, 2h, 7d"
    group.add_argument("--since", type=_moment, metavar="TIME", help=f"records at or after TIME ({when})")
    group.add_argument("--until", type=_moment, metavar="TIME", help=f"records before TIME ({when})")
    group.add_argument("--provider", help="provider id, e.g. replicate")
    group.add_argument("--slug", help="stored provider slug (without @)")
    group.add_argument("--status", type=_status, metavar="CODE", help="a status code, 'error' or 'success'")
    group.add_argument("--errors", action="store_const", const="error", dest="status", help="same as --status error")
    group.add_argument("--key", dest="key_id", metavar="KEY_ID", help="gateway API key id")
    group.add_argument("--trace-id", help="the request's x-portkey-trace-id")
    group.add_argument("--model", help="the model the request named, e.g. gpt-4o-mini")
    group.add_argument("--endpoint", help="proxy, chat, completions, embeddings, models, messages or stream")
    group.add_argument("--prediction-id", help="a Replicate prediction id")
    group.add_argument("--metadata", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="request metadata must have KEY equal to VALUE (repeatable)")
    group.add_argument("-q", "--search", dest="q", metavar="TEXT", help="text in the path or the error")
    return parser


def _prediction_filter_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("filters")
    when = "ISO 8601, epoch ms, or a time ago such as 15m, 2h, 7d"
    group.add_argument("--since", type=_moment, metavar="TIME", help=f"created at or after TIME ({when})")
    group.add_argument("--until", type=_moment, metavar="TIME", help=f"created before TIME ({when})")
    group.add_argument("--status", choices=PREDICTION_STATUSES, help="Replicate's status, as last seen")
    group.add_argument("--model", help="owner/name of the model")
    group.add_argument("--key", dest="key_id", metavar="KEY_ID", help="gateway API key id that created it")
    group.add_argument("--slug", help="stored provider slug (without @)")
    return parser


def log_filter(args: argparse.Namespace) -> LogFilter:
    names = ("since", "until", "provider", "slug", "status", "key_id", "trace_id", "model", "endpoint",
             "prediction_id", "q")
    metadata = dict(getattr(args, "metadata", []))
    return LogFilter(**{name: getattr(args, name, None) for name in names}, metadata=metadata)


# -- commands ----------------------------------------------------------------------------------------
def list_logs(args: argparse.Namespace, log_store: LogStore, filters: LogFilter) -> None:
    if not 1 <= args.limit <= MAX_LIMIT:
        raise CommandError(f"--limit must be between 1 and {MAX_LIMIT}")
    rows, next_cursor = log_store.list(filters, args.limit, args.cursor)
    if args.json:
        _print_json({"object": "list", "data": rows, "next_cursor": next_cursor}, indent=True)
        return
    if not rows:
        print("No logs match.")
        return
    print(_HEADER)
    for row in rows:
        print(table_line(row))
    marks = legend(rows)
    if marks:
        print(f"\n{marks}")
    if next_cursor:
        print(f"\nMore: modelport logs list --cursor {next_cursor} (with the same filters)")


def tail_logs(args: argparse.Namespace, log_store: LogStore, filters: LogFilter) -> None:
    if args.lines < 0:
        raise CommandError("--lines must not be negative")
    latest, _ = log_store.list(filters, max(args.lines, 1))
    emit = _json_line if args.json else _table_line_printer()
    for row in reversed(latest[: args.lines]):
        emit(row)
    if not args.follow:
        return
    newest = max((epoch_ms(r["created_at"], "created_at") for r in latest), default=int(time.time() * 1000))
    # id → created_at of the records in the look-back window that are old news: printed, or older than
    # what was printed. One newer than that arrived since the first read, and is news.
    before = [row for row in _every(log_store, _window(filters, newest)) if epoch_ms(row["created_at"], "") <= newest]
    shown = {row["id"]: row["created_at"] for row in before}
    while True:
        time.sleep(FOLLOW_INTERVAL)
        fresh = [row for row in _every(log_store, _window(filters, newest)) if row["id"] not in shown]
        for row in sorted(fresh, key=lambda r: (r["created_at"], r["id"])):
            emit(row)
            shown[row["id"]] = row["created_at"]
            newest = max(newest, epoch_ms(row["created_at"], "created_at"))
        horizon = newest - LOOK_BACK_MS
        shown = {i: at for i, at in shown.items() if epoch_ms(at, "created_at") >= horizon}


def show_log(args: argparse.Namespace, log_store: LogStore, filters: LogFilter) -> None:
    record = log_store.get(args.log_id)
    if record is None:
        raise CommandError(f"no log record {args.log_id!r}")
    if args.json:
        _print_json(record, indent=True)
    else:
        print_record(record, sys.stdout)


def export_logs(args: argparse.Namespace, log_store: LogStore, filters: LogFilter) -> None:
    rows = log_store.iter_export(filters, full=args.full)
    if args.format == "jsonl":
        chunks = jsonl_chunks(rows)
    else:
        chunks = csv_chunks(rows, FULL_COLUMNS if args.full else SUMMARY_FIELDS)
    if args.output is None:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    count = 0
    with open(args.output, "wb") as file:
        for chunk in chunks:
            file.write(chunk)
            count += chunk.count(b"\n")
    records = count - (1 if args.format == "csv" else 0)
    print(f"Wrote {records} record(s) to {args.output}.", file=sys.stderr)


def predictions(args: argparse.Namespace, log_store: LogStore, _: LogFilter) -> None:
    filters = PredictionFilter(**{name: getattr(args, name) for name in ("since", "until", "status", "model", "key_id", "slug")})
    if args.prediction_id is None:
        return list_predictions(args, log_store, filters)
    if filters != PredictionFilter() or args.cursor:
        raise CommandError("give a prediction id, or filters to list predictions, not both")
    found = view.get_prediction(log_store, args.prediction_id)
    if found is None:
        raise CommandError(f"no prediction {args.prediction_id!r} was seen through the gateway")
    if args.json:
        _print_json(found, indent=True)
    else:
        print_prediction(found, sys.stdout)


def list_predictions(args: argparse.Namespace, log_store: LogStore, filters: PredictionFilter) -> None:
    if not 1 <= args.limit <= MAX_LIMIT:
        raise CommandError(f"--limit must be between 1 and {MAX_LIMIT}")
    rows, next_cursor = view.list_predictions(log_store, filters, args.limit, args.cursor)
    if args.json:
        _print_json({"object": "list", "data": rows, "next_cursor": next_cursor}, indent=True)
        return
    if not rows:
        print("No predictions match.")
        return
    print(_PREDICTION_HEADER)
    for row in rows:
        print(prediction_line(row))
    if next_cursor:
        print(f"\nMore: modelport logs predictions --cursor {next_cursor} (with the same filters)")


def _window(filters: LogFilter, newest: int) -> LogFilter:
    since = newest - LOOK_BACK_MS
    return replace(filters, since=since if filters.since is None else max(filters.since, since))


def _every(log_store: LogStore, filters: LogFilter) -> Iterator[dict[str, Any]]:
    cursor = None
    while True:
        rows, cursor = log_store.list(filters, MAX_LIMIT, cursor)
        yield from rows
        if cursor is None:
            return


# -- printing ----------------------------------------------------------------------------------------
# Ids are printed whole, however wide: `logs show` takes them as printed.
_ID_WIDTH = len(new_time_ordered_id("log_"))
_COLUMNS = (("TIME", 23), ("ID", _ID_WIDTH), ("STATUS", 6), ("PROVIDER", 24), ("MODEL", 24), ("LATENCY", 9),
            ("TOKENS", 7), ("COST", 11), ("REQUEST", 0))  # fmt: skip
_HEADER = "  ".join(name.ljust(width) for name, width in _COLUMNS).rstrip()


def table_line(row: dict[str, Any]) -> str:
    """One record as a fixed-width line (fixed, so ``tail -f`` lines stay aligned with the header)."""
    cells = (
        _moment_text(row["created_at"]),
        row["id"],
        str(row["status"]) + ("*" if row["gateway_exception"] else ""),
        row["provider"] + (f" @{row['slug']}" if row["slug"] else "") if row["provider"] else "-",
        row["model"] or "-",
        f"{row['latency_ms']:.0f} ms" if row["latency_ms"] is not None else "-",
        str(row["total_tokens"]) if row["total_tokens"] is not None else "-",
        cost_text(row),
        f"{row['method']} {row['path']}",
    )
    return "  ".join(_fit(cell, width) for cell, (_, width) in zip(cells, _COLUMNS)).rstrip()


_PREDICTION_COLUMNS = (("CREATED", 23), ("ID", 26), ("STATUS", 10), ("MODEL", 28), ("PREDICT", 9), ("COST", 11),
                       ("KEY", 0))  # fmt: skip
_PREDICTION_HEADER = "  ".join(name.ljust(width) for name, width in _PREDICTION_COLUMNS).rstrip()


def prediction_line(row: dict[str, Any]) -> str:
    cells = (
        _moment_text(row["created_at"]), row["id"], row["status"] or "-",
        row["model"] or row["deployment"] or row["version"] or "-",
        f"{row['predict_time']:g} s" if row["predict_time"] is not None else "-",
        prediction_cost_text(row), row["key_id"] or "-",
    )  # fmt: skip
    return "  ".join(_fit(cell, width) for cell, (_, width) in zip(cells, _PREDICTION_COLUMNS)).rstrip()


def prediction_cost_text(row: dict[str, Any]) -> str:
    """"running" until the end is seen: a prediction is priced then, and is not unpriced before."""
    return cost_text(row) if row["ended_at"] else "running"


def print_prediction(found: dict[str, Any], out: TextIO) -> None:
    """A prediction for people: its fields, then its lifecycle, one log record a line, oldest first."""
    print(f"{found['id']}  {found['status'] or '-'}", file=out)
    fields = {
        "model": found["model"], "version": found["version"], "deployment": found["deployment"],
        "provider": cell(found["provider"]) + (f" (@{found['slug']})" if found["slug"] else ""),
        "key": found["key_id"], "created": found["created_at"], "ended": found["ended_at"] or "not seen yet",
        "predict time": f"{found['predict_time']:g} s" if found["predict_time"] is not None else None,
        "cost": prediction_cost_text(found) + (f" ({found['cost_reason']})" if found["cost_reason"] else ""),
    }  # fmt: skip
    width = max(map(len, fields))
    for name, value in fields.items():
        print(f"  {name.ljust(width)}  {cell(value)}", file=out)
    start = epoch_ms(found["created_at"], "created_at")
    more = " (the first 1000)" if found["lifecycle_truncated"] else ""
    _section(out, f"Lifecycle{more}", [step_line(step, start) for step in found["lifecycle"]])


def step_line(step: dict[str, Any], start_ms: int) -> str:
    offset = (epoch_ms(step["created_at"], "created_at") - start_ms) / 1000
    saw = f"  saw {step['saw_status']}" if step["saw_status"] else ""
    priced = "  ← end seen, priced here" if step["saw_end"] else ""
    return (f"+{offset:.3f}s".ljust(10) + f"{step['step']:<9}{step['method']} {step['path']}  → {cell(step['status'])}"
            f"{saw}{priced}  {step['log_id']}")


def _moment_text(iso: str) -> str:
    return iso.replace("T", " ").rstrip("Z")


def legend(rows: list[dict[str, Any]]) -> str | None:
    """What the table's marks mean, for the marks it shows."""
    notes = []
    if any(row["gateway_exception"] for row in rows):
        notes.append("STATUS* = an error of the gateway itself, not of the provider")
    if any(cost_text(row).startswith("~") for row in rows):
        notes.append("~$ = an estimated cost (see logs show for why)")
    return "; ".join(notes) or None


def cost_text(row: dict[str, Any]) -> str:
    """A cost, with "unpriced" said outright (never shown as $0) and estimates marked with "~"."""
    if row["cost_usd"] is None:
        return row["cost_status"] or "unpriced"
    return ("~" if row["cost_status"] == "estimated" else "") + f"${row['cost_usd']:.6f}"


def _fit(text: str, width: int) -> str:
    if not width:
        return text
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"


def _table_line_printer() -> Callable[[dict[str, Any]], None]:
    printed_header = False

    def emit(row: dict[str, Any]) -> None:
        nonlocal printed_header
        if not printed_header:
            print(_HEADER, flush=True)
            printed_header = True
        print(table_line(row), flush=True)

    return emit


def _json_line(row: dict[str, Any]) -> None:
    _print_json(row, indent=False)


def _print_json(value: Any, indent: bool) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else 0).decode(), flush=True)


def print_record(record: dict[str, Any], out: TextIO) -> None:
    """A record for people: the summary as aligned fields, then attempts, usage, feedback, headers, bodies."""
    exception = " (gateway error)" if record["gateway_exception"] else ""
    print(f"{record['id']}  {record['method']} {record['path']}  →  {record['status']}{exception}", file=out)
    fields = {
        "time": record["created_at"], "trace id": record["trace_id"], "endpoint": record["endpoint"],
        "provider": cell(record["provider"]) + (f" (@{record['slug']})" if record["slug"] else ""),
        "model": record["model"], "key": f"{cell(record['key_name'])} ({cell(record['key_id'])})",
        "latency": f"{cell(record['latency_ms'])} ms (upstream {cell(record['upstream_latency_ms'])} ms)",
        "bytes": f"{cell(record['request_bytes'])} in, {cell(record['response_bytes'])} out",
        "tokens": f"{cell(record['input_tokens'])} in, {cell(record['output_tokens'])} out",
        "cost": cost_text(record) + (f" ({record['cost_reason']})" if record.get("cost_reason") else ""),
        "cache": record["cache_status"], "stream": "yes" if record["stream"] else "no",
        "retries": record["retry_count"], "target": record.get("last_used_index"),
        "prediction": record["prediction_id"], "error": record["error"], "metadata": record["metadata"],
    }  # fmt: skip
    width = max(map(len, fields))
    for name, value in fields.items():
        print(f"  {name.ljust(width)}  {cell(value)}", file=out)
    _section(out, "Attempts", [attempt_line(a) for a in record.get("attempts") or []])
    if record.get("usage"):
        _section(out, "Usage", [cell(record["usage"])])
    _section(out, "Feedback", [
        f"{f['id']}  value {f['value']}  weight {f['weight']}  {f['created_at']}  {cell(f['metadata'])}"
        for f in record.get("feedback", [])
    ])  # fmt: skip
    for side in ("request", "response"):
        headers = record.get(f"{side}_headers") or {}
        _section(out, f"{side.capitalize()} headers", [f"{name}: {value}" for name, value in headers.items()])
        _section(out, f"{side.capitalize()} body", body_lines(record, side))


def attempt_line(attempt: dict[str, Any]) -> str:
    slug = f" @{attempt['slug']}" if attempt.get("slug") else ""
    error = f"  error: {attempt['error']}" if attempt.get("error") else ""
    return (f"{attempt.get('index')}  {attempt.get('provider')}{slug}  status {cell(attempt.get('status'))}"
            f"  {cell(attempt.get('latency_ms'))} ms  retry {attempt.get('retry', 0)}{error}")


def body_lines(record: dict[str, Any], side: str) -> list[str]:
    body = record.get(f"{side}_body")
    if body is None:
        return []
    if record.get(f"{side}_body_encoding") == "base64":
        return [f"(binary, base64) {body}"]
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode().splitlines()
    except orjson.JSONDecodeError:
        return body.splitlines()  # SSE streams, form data, text


def _section(out: TextIO, title: str, lines: list[str]) -> None:
    if lines:
        print(f"\n{title}:", file=out)
        for line in lines:
            print(f"  {line}", file=out)


def cell(value: Any) -> str:
    if value is None or value == {} or value == []:
        return "-"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


# -- running a command -------------------------------------------------------------------------------
def _run(command: Command, args: argparse.Namespace, settings_factory: SettingsFactory) -> int:
    as_json = getattr(args, "json", False)  # export has no --json: it writes JSON lines or CSV anyway
    try:
        settings = settings_factory(args)
        existing_database(settings)
        log_store = open_log_store(settings)
        try:
            command(args, log_store, log_filter(args))
        finally:
            log_store.close()
    except (CommandError, ValueError) as exc:  # ValueError: a bad --cursor, from the query layer
        print_error(str(exc), as_json)
        return 1
    except StoreUnavailable as exc:
        print_error(f"cannot read the logs ({exc}); has a gateway of this version run on this data dir?", as_json)
        return 1
    except BrokenPipeError:  # `modelport logs export | head`
        return reader_went_away()
    return 0


# -- argument types ----------------------------------------------------------------------------------
_AGO = re.compile(r"^(\d+)([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _moment(text: str) -> int:
    ago = _AGO.match(text.strip())
    if ago:
        return int(time.time() * 1000) - int(ago.group(1)) * _UNIT_MS[ago.group(2)]
    try:
        return epoch_ms(text, "the time")
    except Invalid as exc:
        raise argparse.ArgumentTypeError(f"{exc.message}, or a time ago such as 15m, 2h, 7d") from None


def _status(text: str) -> int | str:
    try:
        return status_code("status").convert(text, "--status")
    except Invalid as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
