"""Requests that meet a broken upstream or a client that leaves: the mix of the fault soak.

Shared by tests/test_fault_soak.py and bench/fault_soak.py. Each ``Case`` is a route (how the request
reaches the faulty upstream, tests/fakes/faulty.py), the upstream's fault, what the client does, and
the outcomes allowed. The client speaks HTTP/1.1 over raw asyncio sockets, one connection a request,
so it can stop at any byte: in the middle of its own head or body, right after the response's head,
or in the middle of a body or stream.

What counts as a request the gateway saw (and so must have exactly one log record): every request
whose head the gateway received whole. A client that leaves in the middle of its head was never a
request (``cut_head``: no record); one that leaves in the middle of its body was (``cut_body``: a 499
record), and so was one that leaves while the answer is on its way (the record's status is what the
gateway had sent, or 499 once it noticed the client gone).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from tests.fakes.faulty import closed_port

# Settings the gateway runs the mix with: an upstream silent this long mid-response is dead; a
# connection takes at most this long. Low, so that stalls end within a request's deadline.
# (At 1 s, on a machine loaded by other work, a body of 33 MiB relayed to a slow client was once cut
# off as silent.)
UPSTREAM_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0
REQUEST_TIMEOUT_MS = 300  # x-portkey-request-timeout on the cases that send it: the wait for the head
DEADLINE_S = 10.0  # the longest a request of the mix may take (a few upstream timeouts): past it, the gateway hung
HEAVY_DEADLINE_S = 30.0  # the same for a case that moves 32+ MiB through the gateway and the client
READ_BEFORE_LEAVING = 64 * 1024  # mid_body: bytes of the body read before the client leaves
TAG = "fault_soak"  # x-portkey-metadata key whose value names the run, so its records can be counted
STORED_SLUG = "faulty"  # a stored provider (declared in the config file) whose custom host is the upstream
STORED_SECRET_ENV = "FAULT_SOAK_OPENAI_KEY"

# Outcomes, as the client saw them.
ANSWERED = "answered"  # the upstream's own answer, whole
GATEWAY_ERROR = "gateway_error"  # 502/504 JSON naming the error, x-portkey-gateway-exception: true
TRUNCATED = "truncated"  # the head was sent, then the connection ended before the body's end: the honest signal
LEFT = "left"  # the client went away on purpose, after what it meant to read
UNSENT = "unsent"  # the client went away before its request was whole, reading nothing
BROKEN = "broken"  # anything else: a 500, an error without its JSON, a reset, no answer
HUNG = "hung"  # no end within DEADLINE_S



def gateway_settings() -> dict[str, Any]:
    """``modelport serve`` settings for the mix (the config file's keys)."""
    return {"require_api_key": False, "allow_private_hosts": True, "upstream_timeout": UPSTREAM_TIMEOUT_S,
            "connect_timeout": CONNECT_TIMEOUT_S}


def stored_provider(upstream: str) -> dict[str, Any]:
    """The config file's ``[[providers]]`` entry for the ``stored_chat`` route."""
    return {"slug": STORED_SLUG, "provider": "openai", "secret_env": STORED_SECRET_ENV, "custom_host": upstream + "/v1"}


OPENAI_CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say fine."}]}
CLAUDE_CHAT = {"model": "claude-3-5-haiku-20241022", "max_tokens": 16, "messages": [{"role": "user", "content": "Say fine."}]}


@dataclass(frozen=True)
class Route:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    fault_by_header: bool = False  # the base URL is the stored provider's: the fault travels in x-fault


ROUTES = {
    # Unified chat completions, OpenAI-compatible: relayed as the upstream sends it.
    "chat": Route("/v1/chat/completions", {"x-portkey-provider": "openai", "authorization": "Bearer sk-fault-soak"},
                  OPENAI_CHAT),
    "chat_stream": Route("/v1/chat/completions", {"x-portkey-provider": "openai", "authorization": "Bearer sk-fault-soak"},
                         {**OPENAI_CHAT, "stream": True}),
    # The same through a stored provider (its credential from the config file's secret_env).
    "stored_chat": Route("/v1/chat/completions", {"x-portkey-provider": "@" + STORED_SLUG}, OPENAI_CHAT,
                         fault_by_header=True),
    # Unified chat completions translated to Anthropic's Messages API: the gateway reads the body.
    "claude": Route("/v1/chat/completions", {"x-portkey-provider": "anthropic", "x-api-key": "sk-ant-fault-soak"},
                    CLAUDE_CHAT),
    "claude_stream": Route("/v1/chat/completions", {"x-portkey-provider": "anthropic", "x-api-key": "sk-ant-fault-soak"},
                           {**CLAUDE_CHAT, "stream": True}),
    # The proxy route, byte for byte.
    "proxy": Route("/v1/fault-proxy", {"x-portkey-provider": "openai", "authorization": "Bearer sk-fault-soak"},
                   {"anything": "goes"}),
    # The proxy route with URL rewriting (Replicate's): the gateway reads JSON bodies to rewrite them.
    "replicate": Route("/v1/predictions", {"x-portkey-provider": "replicate", "authorization": "Bearer r8_fault-soak"},
                       {"version": "v1", "input": {"prompt": "fine"}}),
}

ERROR = frozenset({GATEWAY_ERROR})
WHOLE = frozenset({ANSWERED})
RELAYED_THEN_LEFT = frozenset({LEFT})
CUT_OFF = frozenset({TRUNCATED})


@dataclass(frozen=True)
class Case:
    route: str
    fault: str  # a tests/fakes/faulty.py fault, or "refuse" (a closed port)
    client: str = "read"  # read | cut_head | cut_body | after_headers | mid_body
    weight: int = 10
    expect: frozenset[str] = ERROR
    request_timeout: bool = False  # sends x-portkey-request-timeout
    deadline: float = DEADLINE_S

    @property
    def name(self) -> str:
        return f"{self.route}/{self.fault}/{self.client}" + ("/timeout" if self.request_timeout else "")

    @property
    def recorded(self) -> bool:
        """Whether the gateway saw the request (see the module docstring)."""
        return self.client != "cut_head"


def _mix() -> list[Case]:
    cases: list[Case] = []
    # Every route meets every failure before the response's head: each a gateway error.
    before_head = ("refuse", "accept_close", "stall_headers", "reset_before", "bad_status", "bad_headers", "bad_length")
    for route in ("chat", "chat_stream", "stored_chat", "claude", "claude_stream", "proxy", "replicate"):
        # A stored provider's host is the upstream's: it cannot be refused.
        cases += [Case(route, fault) for fault in before_head if not (route == "stored_chat" and fault == "refuse")]
        cases.append(Case(route, "ok", expect=WHOLE, weight=20))
        cases.append(Case(route, "slow_drip", expect=WHOLE, weight=3))
    cases += [Case(route, "stall_headers", request_timeout=True) for route in ("chat", "claude", "proxy")]
    # A body that breaks off: read whole (small, with a length; or translated), so a gateway error;
    # relayed as it comes (streams), so the client sees it cut off.
    for route in ("chat", "stored_chat", "claude", "claude_stream", "proxy", "replicate"):
        cases += [Case(route, "stall_body"), Case(route, "reset_mid")]
    for route in ("chat_stream", "proxy"):
        cases += [Case(route, "stall_stream", expect=CUT_OFF), Case(route, "reset_stream", expect=CUT_OFF)]
    cases += [Case("claude_stream", "stall_stream", expect=CUT_OFF), Case("claude_stream", "reset_stream", expect=CUT_OFF)]
    # Endless bodies and streams, relayed until the client leaves.
    for route in ("chat", "chat_stream", "stored_chat", "proxy"):
        cases.append(Case(route, "endless_chunked", client="mid_body", expect=RELAYED_THEN_LEFT))
    # Rewriting reads WHOLE_LIMIT of it first, then relays it as it is: rare, it moves 32 MiB.
    cases.append(Case("replicate", "endless_chunked", client="mid_body", expect=RELAYED_THEN_LEFT, weight=1,
                      deadline=HEAVY_DEADLINE_S))
    for route in ("chat_stream", "proxy", "claude_stream"):
        cases.append(Case(route, "endless_sse", client="mid_body", expect=RELAYED_THEN_LEFT))
    cases.append(Case("chat_stream", "endless_sse", client="after_headers", expect=RELAYED_THEN_LEFT))
    # Bodies past what the gateway reads whole, and a decompression bomb: rare, each moves 32+ MiB.
    heavy = HEAVY_DEADLINE_S
    cases += [
        Case("replicate", "gzip_bomb", expect=WHOLE, weight=1, deadline=heavy),  # relayed still compressed, not opened
        Case("claude", "gzip_bomb", weight=1, deadline=heavy),  # 502: opens past the bound
        Case("chat", "gzip_bomb", expect=WHOLE, weight=2),  # relayed untouched
        Case("replicate", "oversize", expect=WHOLE, weight=1, deadline=heavy),  # relayed without rewriting
        Case("claude", "oversize", weight=1, deadline=heavy),  # 502: too large to translate
        Case("proxy", "oversize", client="mid_body", expect=RELAYED_THEN_LEFT, weight=2),
    ]
    # A 200 whose body is not JSON: relayed as it is, or a 502 where the gateway must translate it.
    cases += [Case("chat", "not_json", expect=WHOLE, weight=3), Case("claude", "not_json", weight=3)]
    # Clients that leave: in the middle of their head (never a request) or body (499), right after
    # the response's head, in the middle of a body being dripped.
    cases += [Case(route, "ok", client="cut_head", expect=frozenset({UNSENT})) for route in ("chat", "proxy")]
    cases += [Case(route, "ok", client="cut_body", expect=frozenset({UNSENT})) for route in ("chat", "proxy", "replicate")]
    cases += [Case(route, "slow_drip", client="after_headers", expect=RELAYED_THEN_LEFT)
              for route in ("chat", "proxy", "claude")]
    cases.append(Case("chat_stream", "stall_stream", client="after_headers", expect=RELAYED_THEN_LEFT))
    cases.append(Case("proxy", "endless_chunked", client="after_headers", expect=RELAYED_THEN_LEFT))
    return cases


MIX = _mix()


@dataclass
class Result:
    case: Case
    trace_id: str
    outcome: str
    status: int = 0
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Target:
    """Where the mix sends requests: the gateway's address and the faulty upstream's origin."""

    host: str
    port: int
    upstream: str  # origin of tests/fakes/faulty.py
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    refused: str = field(default_factory=lambda: f"http://127.0.0.1:{closed_port()}")


def request_bytes(case: Case, target: Target, trace_id: str) -> tuple[bytes, bytes]:
    """(head, body) of the case's request."""
    route = ROUTES[case.route]
    origin = target.refused if case.fault == "refuse" else target.upstream
    headers = dict(route.headers)
    if route.fault_by_header:
        headers["x-fault"] = case.fault
    else:
        headers["x-portkey-custom-host"] = f"{origin}/fault/{case.fault}/v1"
    if case.request_timeout:
        headers["x-portkey-request-timeout"] = str(REQUEST_TIMEOUT_MS)
    headers["x-portkey-trace-id"] = trace_id
    headers["x-portkey-metadata"] = json.dumps({TAG: target.run, "case": case.name})
    body = json.dumps(route.body).encode()
    lines = [f"POST {route.path} HTTP/1.1", f"host: {target.host}:{target.port}", "content-type: application/json",
             f"content-length: {len(body)}", "connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), body


async def run_case(case: Case, target: Target) -> Result:
    trace_id = f"fs-{target.run}-{uuid.uuid4().hex[:16]}"
    started = time.monotonic()
    result = Result(case, trace_id, BROKEN)
    try:
        async with asyncio.timeout(case.deadline):
            await _exchange(case, target, result)
    except TimeoutError:
        result.outcome, result.detail = HUNG, f"no end within {case.deadline:g} s"
    except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        result.outcome, result.detail = BROKEN, f"{type(exc).__name__}: {exc}"
    result.seconds = time.monotonic() - started
    return result


async def _exchange(case: Case, target: Target, result: Result) -> None:
    head, body = request_bytes(case, target, result.trace_id)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        if case.client == "cut_head":
            writer.write(head[: len(head) // 2])
            await writer.drain()
            result.outcome = UNSENT
            return
        if case.client == "cut_body":
            writer.write(head + body[: len(body) // 2])
            await writer.drain()
            await asyncio.sleep(0.01)  # let the gateway start on the request before the client goes
            result.outcome = UNSENT
            return
        writer.write(head + body)
        await writer.drain()
        status, headers = await _read_head(reader)
        result.status = status
        if case.client == "after_headers":
            result.outcome = LEFT
            return
        if case.client == "mid_body":
            got = await _read_some(reader, READ_BEFORE_LEAVING)
            result.outcome, result.detail = (LEFT, "") if got >= READ_BEFORE_LEAVING else (BROKEN, f"body ended after {got} bytes")
            return
        payload, complete = await _read_body(reader, headers)
        result.outcome, result.detail = _judge(status, headers, payload, complete)
    finally:
        writer.transport.abort()  # the client leaves now, whatever the gateway is still sending


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_some(reader: asyncio.StreamReader, size: int) -> int:
    got = 0
    while got < size:
        data = await reader.read(65536)
        if not data:
            break
        got += len(data)
    return got


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> tuple[bytes, bool]:
    """(the first 64 KB of the body, whether it came whole); a body larger is read and dropped."""
    kept = bytearray()
    if "content-length" in headers:
        left = int(headers["content-length"])
        while left:
            data = await reader.read(min(left, 1 << 20))
            if not data:
                return bytes(kept), False
            left -= len(data)
            if len(kept) < 65536:
                kept += data[: 65536 - len(kept)]
        return bytes(kept), True
    if "chunked" in headers.get("transfer-encoding", ""):
        try:
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                data = await reader.readexactly(size + 2)
                if len(kept) < 65536:
                    kept += data[: min(size, 65536 - len(kept))]
                if size == 0:
                    return bytes(kept), True
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return bytes(kept), False
    while data := await reader.read(65536):  # delimited by the close
        if len(kept) < 65536:
            kept += data[: 65536 - len(kept)]
    return bytes(kept), True


def _judge(status: int, headers: dict[str, str], body: bytes, complete: bool) -> tuple[str, str]:
    if not complete:
        return TRUNCATED, f"status {status}, body cut off"
    if headers.get("x-portkey-gateway-exception") == "true":
        try:
            message = json.loads(body)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            return BROKEN, f"status {status}: a gateway error without its JSON: {body[:200]!r}"
        if status in (502, 504) and message:
            return GATEWAY_ERROR, f"{status} {message[:200]}"
        return BROKEN, f"status {status}: {message[:200]}"
    if 200 <= status < 300:
        return ANSWERED, ""
    return BROKEN, f"status {status}, not from the gateway's errors: {body[:200]!r}"


def pick(count: int, seed: int = 14, cases: Iterable[Case] = MIX) -> list[Case]:
    cases = list(cases)
    return random.Random(seed).choices(cases, weights=[c.weight for c in cases], k=count)


async def drive(plan: list[Case], target: Target, concurrency: int, results: list[Result]) -> None:
    """Run every case of ``plan``, at most ``concurrency`` at a time, appending to ``results`` as they end."""
    queue = iter(plan)

    async def lane() -> None:
        for case in queue:
            results.append(await run_case(case, target))

    await asyncio.gather(*(lane() for _ in range(concurrency)))


def unexpected(results: Iterable[Result]) -> list[Result]:
    return [r for r in results if r.outcome not in r.case.expect]


def tally(results: Iterable[Result]) -> dict[str, Counter]:
    """Outcomes by case name."""
    table: dict[str, Counter] = {}
    for r in results:
        table.setdefault(r.case.name, Counter())[r.outcome] += 1
    return table


def exported_records(v1: str, admin_key: str, run: str) -> list[dict[str, Any]]:
    """Every log record of the run (tagged with its id), through the logs API's export."""
    import httpx  # only the checks need it; the load itself is raw sockets

    params = {"format": "jsonl", f"metadata.{TAG}": run}
    with httpx.stream("GET", v1 + "/logs/export", params=params, headers={"x-portkey-api-key": admin_key},
                      timeout=120) as response:
        response.raise_for_status()
        return [json.loads(line) for line in response.iter_lines() if line]


def record_statuses(result: Result) -> set[int] | None:
    """The statuses a request's record may hold (None: any, the request already failed)."""
    if result.outcome in (BROKEN, HUNG):
        return None
    if result.case.client == "cut_body":
        return {499}
    if result.outcome == LEFT:  # what the gateway had sent, or 499 once it saw the client gone
        return {result.status, 499}
    return {result.status}


def check_records(results: list[Result], records: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests the gateway saw against the run's records: each exactly once, with the status sent."""
    seen = Counter(row["trace_id"] for row in records)
    status = {row["trace_id"]: row["status"] for row in records}
    wanted = {r.trace_id: r for r in results if r.case.recorded}
    missing = [r for trace, r in wanted.items() if trace not in seen]
    unrecorded = {r.trace_id for r in results if not r.case.recorded}
    disagree = [(r, status[t]) for t, r in wanted.items() if t in status and (allowed := record_statuses(r)) is not None
                and status[t] not in allowed]
    return {
        "requests_seen": len(wanted), "records": len(records),
        "missing": len(missing), "missing_by_case": dict(Counter(r.case.name for r in missing).most_common(10)),
        "duplicates": sum(n - 1 for n in seen.values() if n > 1),
        "extra": len(seen.keys() - wanted.keys() - unrecorded), "recorded_though_unsent": len(seen.keys() & unrecorded),
        "status_disagrees": len(disagree),
        "status_disagrees_examples": [f"{r.case.name}: client saw {r.status} ({r.outcome}), record {s}" for r, s in disagree[:10]],
    }


def records_lost(check: dict[str, Any]) -> bool:
    return bool(check["missing"] or check["duplicates"] or check["extra"] or check["recorded_though_unsent"])
