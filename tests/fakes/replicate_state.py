"""What the fake Replicate remembers, and the knobs tests turn to script it.

``ReplicateState`` is reachable as ``app["replicate"]``. Tests mutate it from their own thread while
the fake's loop reads it; every knob is a plain attribute or list append, so the GIL keeps that safe.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from aiohttp import web
from multidict import CIMultiDict

if TYPE_CHECKING:
    from tests.fakes.replicate_catalog import FakeModel
    from tests.fakes.replicate_files import FakeFile

PROBLEM_JSON = "application/problem+json"
TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
# Replicate's 401 body, verbatim from recorded traffic; replicate-python's own test asserts on it.
UNAUTHENTICATED = {
    "title": "Unauthenticated",
    "detail": "You did not pass a valid authentication token",
    "status": 401,
}
UNSET: Any = object()
ORIGIN = web.AppKey("origin", str)

T = TypeVar("T")


def new_id() -> str:
    """A 26-character lowercase base32 id, the shape of real prediction ids."""
    return base64.b32encode(secrets.token_bytes(20)).decode().lower()[:26]


def timestamp(moment: datetime) -> str:
    """ISO 8601 with microseconds and a ``Z``, as predictions carry them."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now() -> datetime:
    return datetime.now(UTC)


class ProblemError(Exception):
    """Raised anywhere in a handler; answered as an RFC 7807 ``application/problem+json`` body."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(body.get("detail"))
        self.status = status
        self.body = body
        self.headers = headers or {}

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            text=json.dumps(self.body, separators=(",", ":")),
            content_type=PROBLEM_JSON,
            headers=self.headers,
        )


def problem(status: int, detail: str, title: str | None = None, **extra: Any) -> ProblemError:
    body: dict[str, Any] = {"detail": detail, "status": status}
    if title is not None:
        body = {"title": title, **body}
    return ProblemError(status, {**body, **extra})


def not_found() -> ProblemError:
    return problem(404, "Not found.")


def invalid(*fields: tuple[str, str, str]) -> ProblemError:
    """422 in the shape Replicate uses for body validation (replicate-javascript#249).

    Each field is ``(type, field, description)``.
    """
    detail = "".join(f"- {description}\n" for _, _, description in fields)
    return problem(
        422,
        detail,
        "Input validation failed",
        invalid_fields=[{"type": t, "field": f, "description": d} for t, f, d in fields],
    )


@dataclass
class RecordedRequest:
    """One request as the fake saw it; ``origin`` is ``api`` or ``stream``."""

    method: str
    path_qs: str
    headers: CIMultiDict[str]
    body_size: int = 0
    origin: str = "api"
    body: bytes | None = None

    @property
    def path(self) -> str:
        return self.path_qs.split("?", 1)[0]

    def json(self) -> Any:
        return None if self.body is None else json.loads(self.body)


RECORD = web.RequestKey("record", RecordedRequest)


@dataclass
class Fault:
    """A scripted misbehaviour for the next ``remaining`` requests whose path starts with ``path``
    (any path when None) and whose method is ``method`` (any when None)."""

    status: int | None = None
    delay: float = 0.0
    reset: bool = False
    after_events: int | None = None
    path: str | None = None
    method: str | None = None
    remaining: int = 1
    retry_after: int = 1
    detail: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.path is None or path.startswith(self.path))
            and (self.method is None or self.method.upper() == method)
        )


@dataclass
class PredictionScript:
    """How the next created prediction (or training) behaves, instead of its model's defaults.

    ``polls``: GETs until terminal (0: terminal at create). ``run_seconds``: how long it runs while a
    ``Prefer: wait`` create holds the request. ``sync_status``: what a blocking create answers instead
    of a terminal status: ``processing`` with the full output present (as often recorded; the next GET
    ends it), or ``starting`` (the wait gave up at once; then ``polls`` GETs as usual).
    """

    outcome: str | None = None
    polls: int | None = None
    run_seconds: float = 0.0
    sync_status: str | None = None
    output: Any = UNSET
    error: str | None = None
    metrics: dict[str, Any] | None = None
    model: str | None = None


@dataclass
class Job:
    """A prediction or a training (Replicate runs trainings as predictions; ids share one space)."""

    kind: str
    id: str
    seq: int
    model: str
    version: str
    input: dict[str, Any]
    created_at: datetime
    script: PredictionScript
    polls_needed: int
    status: str = "starting"
    output: Any = None
    planned_output: Any = None
    error: str | None = None
    logs: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    deadline: datetime | None = None
    deployment: str | None = None
    destination: str | None = None
    stream_token: str | None = None
    webhook: str | None = None
    webhook_events_filter: list[str] | None = None
    polls_seen: int = 0
    api_origin: str = ""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class ReplicateState:
    """Everything the fake knows; tests script it and read what it received."""

    def __init__(
        self,
        token: str = "r8_test_token",
        *,
        public_origin: str | None = None,
        stream_origin: str | None = None,
        page_size: int = 2,
        max_upload_bytes: int = 100 * 1024 * 1024,
    ) -> None:
        self.token = token
        self.public_origin = public_origin
        self.stream_origin = stream_origin
        self.stream_site = ""
        self.page_size = page_size
        self.max_upload_bytes = max_upload_bytes
        self.polls_to_finish = 2
        self.stream_event_delay = 0.0
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.scripts: list[PredictionScript] = []
        self.jobs: dict[str, Job] = {}
        self.streams: dict[str, str] = {}
        self.files: dict[str, FakeFile] = {}
        self.models: dict[str, FakeModel] = {}
        self.deployments: dict[str, Any] = {}
        self.webhook_deliveries: list[Any] = []  # replicate_webhooks.Delivery, one per POST attempt
        self.webhook_runs: set[Any] = set()  # the tasks running jobs created with a webhook
        self._seq = 0

    # --- scripting -------------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        path: str | None = None,
        method: str | None = None,
        retry_after: int = 1,
        detail: str | None = None,
    ) -> Fault:
        """Answer the next ``times`` matching requests with ``status`` (429, 500, 503, ...)."""
        return self._add(
            Fault(
                status=status,
                remaining=times,
                path=path,
                method=method,
                retry_after=retry_after,
                detail=detail,
            )
        )

    def delay_next(
        self, seconds: float, *, times: int = 1, path: str | None = None, method: str | None = None
    ) -> Fault:
        """Hold the next ``times`` matching requests for ``seconds`` before answering normally."""
        return self._add(Fault(delay=seconds, remaining=times, path=path, method=method))

    def reset_next(
        self,
        *,
        times: int = 1,
        path: str | None = None,
        method: str | None = None,
        after_events: int | None = None,
    ) -> Fault:
        """Drop the connection (TCP RST) before answering, or for a stream after ``after_events`` events."""
        return self._add(
            Fault(reset=True, remaining=times, path=path, method=method, after_events=after_events)
        )

    def script_next(self, **fields: Any) -> PredictionScript:
        """Script the next created prediction or training; ``model=`` limits it to one model."""
        script = PredictionScript(**fields)
        self.scripts.append(script)
        return script

    def _add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def take_fault(self, method: str, path: str, *, streaming: bool = False) -> Fault | None:
        """Consume the first fault matching; ``streaming`` picks faults that fire mid-stream."""
        for fault in self.faults:
            if fault.matches(method, path) and (fault.after_events is not None) == streaming:
                fault.remaining -= 1
                return fault
        return None

    def take_script(self, model: str) -> PredictionScript:
        for script in self.scripts:
            if script.model in (None, model):
                self.scripts.remove(script)
                return script
        return PredictionScript()

    # --- inspection -------------------------------------------------------------------------------

    def prediction(self, prediction_id: str) -> Job:
        return self.jobs[prediction_id]

    @property
    def predictions(self) -> list[Job]:
        """Predictions in creation order (trainings excluded)."""
        return [job for job in self.jobs.values() if job.kind == "prediction"]

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if r.path.startswith(path_prefix) and (method is None or r.method == method)
        ]

    # --- internals shared by the handlers ---------------------------------------------------------

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def api_origin(self, request: web.Request) -> str:
        """The origin absolute URLs point at: the configured one, else the socket the request hit.

        Never the Host header: a gateway that forwarded its own Host would otherwise make the fake
        hand out gateway URLs and hide a missing rewrite.
        """
        if self.public_origin:
            return self.public_origin
        host, port = request.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
        return f"http://{host}:{port}"


def state_of(request: web.Request) -> ReplicateState:
    return request.app["replicate"]


def attach_state(app: web.Application, state: ReplicateState, origin: str) -> None:
    """Put the state where tests reach it, ``app["replicate"]``, and name the origin for the record."""
    with warnings.catch_warnings():
        # A plain string key is the documented way tests reach the state; aiohttp prefers AppKeys.
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["replicate"] = state
    app[ORIGIN] = origin


def record_of(request: web.Request) -> RecordedRequest:
    return request[RECORD]


def paginate(
    request: web.Request,
    state: ReplicateState,
    items: Iterable[T],
    key: Callable[[T], int],
    render: Callable[[T], dict[str, Any]],
) -> dict[str, Any]:
    """One page of ``items`` (ordered by ``key``, highest first) with absolute ``next``/``previous``.

    Cursors are keysets, so a page stays stable while new items arrive. Clients follow ``next``
    literally (replicate-python 1.0.7 ``paginate``), so it carries the fake's own origin.
    """
    ordered = sorted(items, key=key, reverse=True)
    direction, mark = _read_cursor(request.query.get("cursor"))
    if direction == "before":
        window = [item for item in ordered if key(item) < mark][: state.page_size]
    elif direction == "after":
        window = [item for item in ordered if key(item) > mark][-state.page_size :]
    else:
        window = ordered[: state.page_size]
    has_next = bool(window) and key(ordered[-1]) < key(window[-1])
    has_previous = bool(window) and key(ordered[0]) > key(window[0])
    return {
        "next": _page_url(request, state, "before", key(window[-1])) if has_next else None,
        "previous": _page_url(request, state, "after", key(window[0])) if has_previous else None,
        "results": [render(item) for item in window],
    }


def _read_cursor(cursor: str | None) -> tuple[str | None, int]:
    if not cursor:
        return None, 0
    try:
        direction, mark = base64.urlsafe_b64decode(cursor.encode()).decode().split("=", 1)
        if direction in ("before", "after"):
            return direction, int(mark)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise problem(400, "Invalid cursor", "Bad request")


def _page_url(request: web.Request, state: ReplicateState, direction: str, mark: int) -> str:
    cursor = base64.urlsafe_b64encode(f"{direction}={mark}".encode()).decode()
    query = {k: v for k, v in request.query.items() if k != "cursor"}
    query["cursor"] = cursor
    return f"{state.api_origin(request)}{request.path}?{urlencode(query)}"
