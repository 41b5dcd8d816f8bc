"""The SSE host, standing in for stream.replicate.com on an origin of its own.

Wire format as Replicate's stream host sends it and clients parse it [research §2.4]: a ``: hi``
comment first, then ``output`` events each with an ``id:`` (replicate-python drops events without
one), multi-line data as several ``data:`` lines, an ``error`` event on failure, and ``done`` last
(``{}``, or ``{"reason": "canceled" | "error"}``). ``Last-Event-ID`` resumes after that event. The URL
is a capability: no Authorization needed, and one sent is ignored. Reaching ``done`` also makes the
prediction terminal, metrics included, as if it had been polled to the end.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from tests.fakes.replicate_middleware import inject_faults, problems, record, reset_connection
from tests.fakes.replicate_predictions import finish, outcome, start
from tests.fakes.replicate_state import Job, ReplicateState, attach_state, problem


def make_stream_app(state: ReplicateState) -> web.Application:
    app = web.Application(middlewares=[record, inject_faults, problems])
    attach_state(app, state, "stream")
    app.router.add_get("/v1/streams/{token}", stream_prediction)
    return app


async def stream_prediction(request: web.Request) -> web.StreamResponse:
    state: ReplicateState = request.app["replicate"]
    job_id = state.streams.get(request.match_info["token"])
    if job_id is None:
        raise problem(404, "Not found.")
    job = state.jobs[job_id]
    fault = state.take_fault(request.method, request.path, streaming=True)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    await response.write(b": hi\n\n")
    start(job)
    epoch = int(job.created_at.timestamp())
    resume_after = _resumed_index(request.headers.get("Last-Event-ID"))
    outputs = _outputs(state, job)
    sent = 0
    for index, item in enumerate(outputs):
        if job.status == "canceled":
            break
        if index <= resume_after:
            continue
        if fault is not None and sent >= (fault.after_events or 0):
            reset_connection(request)
            return response
        if state.stream_event_delay:
            await asyncio.sleep(state.stream_event_delay)
        await response.write(_event("output", f"{epoch}:{index}", item))
        sent += 1
    if fault is not None:
        # Fewer outputs than after_events: still drop the connection before "done".
        reset_connection(request)
        return response
    finish(state, job)
    await response.write(_ending(job, f"{epoch}:{len(outputs)}"))
    return response


def _outputs(state: ReplicateState, job: Job) -> list[Any]:
    """What the run emits: all of it on success, the first half before a failure."""
    if job.terminal:
        produced = job.output
    else:
        planned = job.planned_output
        produced = (
            planned[: len(planned) // 2]
            if outcome(state, job) != "succeeded" and isinstance(planned, list)
            else planned
        )
    if produced is None:
        return []
    return list(produced) if isinstance(produced, list) else [produced]


def _ending(job: Job, last_id: str) -> bytes:
    epoch, _, index = last_id.partition(":")
    if job.status == "failed":
        error = _event("error", last_id, json.dumps({"detail": job.error}))
        return error + _event("done", f"{epoch}:{int(index) + 1}", json.dumps({"reason": "error"}))
    if job.status in ("canceled", "aborted"):
        return _event("done", last_id, json.dumps({"reason": "canceled"}))
    return _event("done", last_id, "{}")


def _event(name: str, event_id: str, data: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    lines = "".join(f"data: {line}\n" for line in text.split("\n"))
    return f"event: {name}\nid: {event_id}\n{lines}\n".encode()


def _resumed_index(last_event_id: str | None) -> int:
    if not last_event_id:
        return -1
    try:
        return int(last_event_id.rpartition(":")[2])
    except ValueError:
        return -1
