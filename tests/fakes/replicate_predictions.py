"""Predictions and trainings: creation, the starting → processing → terminal machine, sync mode.

A job advances one step per GET (``ReplicateState.polls_to_finish``, default 2: the first GET shows
``processing``, the second a terminal status), at once on a ``Prefer: wait`` create, or when its SSE
stream reaches ``done``. Scripts (``ReplicateState.script_next``) override any of that per job.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from tests.fakes.replicate_catalog import (
    FakeModel,
    FakeVersion,
    check_input,
    default_error,
    default_outcome,
    plan_output,
    run_metrics,
    version_id,
)
from tests.fakes.replicate_webhooks import run_with_webhooks
from tests.fakes.replicate_state import (
    UNSET,
    Job,
    ReplicateState,
    invalid,
    new_id,
    not_found,
    now,
    paginate,
    problem,
    record_of,
    state_of,
    timestamp,
)

# [spec] parameters_prefer_header: "wait" (60 s) or "wait=n", n from 1 to 60. The spec's own pattern,
# ^wait(=([1-9]|[1-9][0-9]|60))?$, also admits 61-99; the fake holds to the documented range.
PREFER = re.compile(r"^wait(=([1-9]|[1-5][0-9]|60))?$")
# [spec] parameters_cancel_after_header: "30", "30s", "5m", "1h30m45s"; at least 5 s.
CANCEL_AFTER = re.compile(r"^(?:(\d+)|(?=\d)(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?)$")
# webhook_completed is legacy but replicate-python still sends it when asked.
MODEL_CREATE_KEYS = frozenset({"input", "webhook", "webhook_events_filter", "webhook_completed", "stream"})
VERSION_CREATE_KEYS = MODEL_CREATE_KEYS | {"version"}
TRAINING_CREATE_KEYS = frozenset(
    {"destination", "input", "webhook", "webhook_events_filter", "webhook_completed"}
)
WEBHOOK_EVENTS = frozenset({"start", "output", "logs", "completed"})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/predictions", create_by_version)
    router.add_get("/v1/predictions", list_predictions)
    router.add_get("/v1/predictions/{id}", get_prediction)
    router.add_post("/v1/predictions/{id}/cancel", cancel_prediction)
    router.add_post("/v1/models/{owner}/{name}/predictions", create_by_model)
    router.add_post("/v1/deployments/{owner}/{name}/predictions", create_by_deployment)
    router.add_post("/v1/models/{owner}/{name}/versions/{version}/trainings", create_training)
    router.add_get("/v1/trainings", list_trainings)
    router.add_get("/v1/trainings/{id}", get_training)
    router.add_post("/v1/trainings/{id}/cancel", cancel_training)


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    record_of(request).body = raw
    try:
        return json.loads(raw)
    except ValueError:
        raise problem(400, "The request body is not valid JSON", "Invalid JSON") from None


def check_body(body: Any, allowed: frozenset[str], required: tuple[str, ...]) -> dict[str, Any]:
    """Mirror ``additionalProperties: false`` plus the required keys of the create schemas."""
    if not isinstance(body, dict):
        raise invalid(("invalid_type", "", f"Invalid type. Expected: object, given: {type(body).__name__}"))
    problems = [
        ("additional_property_not_allowed", "", f"Additional property {key} is not allowed")
        for key in body
        if key not in allowed
    ]
    problems += [("required", "", f"{key} is required") for key in required if key not in body]
    if "input" in body and not isinstance(body["input"], dict):
        problems.append(("invalid_type", "input", "Invalid type. Expected: object"))
    events = body.get("webhook_events_filter")
    if events is not None and (not isinstance(events, list) or not set(events) <= WEBHOOK_EVENTS):
        problems.append(
            (
                "enum",
                "webhook_events_filter",
                "webhook_events_filter must be a subset of start, output, logs, completed",
            )
        )
    if problems:
        raise invalid(*problems)
    return body


# --- lifecycle -----------------------------------------------------------------------------------


def new_job(
    request: web.Request,
    kind: str,
    model: FakeModel,
    version: FakeVersion,
    body: dict[str, Any],
    deployment: str | None = None,
    lifetime: timedelta | None = None,
) -> Job:
    state = state_of(request)
    script = state.take_script(model.full_name)
    job = Job(
        kind=kind,
        id=new_id(),
        seq=state.next_seq(),
        model=model.full_name,
        version=version.id,
        input=body["input"],
        created_at=now(),
        script=script,
        polls_needed=state.polls_to_finish if script.polls is None else script.polls,
        deployment=deployment,
        destination=body.get("destination"),
        webhook=body.get("webhook") or body.get("webhook_completed"),
        webhook_events_filter=(body.get("webhook_events_filter") if body.get("webhook")
                               else ["completed"] if body.get("webhook_completed") else None),
        api_origin=state.api_origin(request),
    )
    job.planned_output = (
        script.output if script.output is not UNSET else plan_output(model, job, job.api_origin)
    )
    job.deadline = job.created_at + lifetime if lifetime else None
    if model.streams and kind == "prediction":
        job.stream_token = new_id() + new_id()
        state.streams[job.stream_token] = job.id
    state.jobs[job.id] = job
    if job.polls_needed == 0:
        finish(state, job)
    if job.webhook:
        run = asyncio.get_running_loop().create_task(
            run_with_webhooks(state, job, advance, lambda j: prediction_body(state, j.api_origin, j)))
        state.webhook_runs.add(run)
        run.add_done_callback(state.webhook_runs.discard)
    return job


def start(job: Job) -> None:
    if job.status != "starting":
        return
    job.status = "processing"
    job.started_at = now()
    job.logs = "Starting run\n"
    if isinstance(job.planned_output, list):
        job.output = job.planned_output[: len(job.planned_output) // 2]


def outcome(state: ReplicateState, job: Job) -> str:
    model = state.models.get(job.model)
    return job.script.outcome or (
        default_outcome(model) if model and job.kind == "prediction" else "succeeded"
    )


def finish(state: ReplicateState, job: Job) -> None:
    """Move to the scripted terminal status, filling output, error, metrics and completed_at."""
    if job.terminal:
        return
    result = outcome(state, job)
    if result == "aborted":
        job.status, job.completed_at, job.metrics = "aborted", now(), {}
        return
    start(job)
    model = state.models.get(job.model) if job.kind == "prediction" else None
    if result == "succeeded":
        job.output = _training_output(state, job) if job.kind == "training" else job.planned_output
        job.logs += "Run succeeded\n"
    elif result == "failed":
        job.error = job.script.error or default_error(state.models[job.model])
        job.logs += "Run failed\n"
    job.status = result
    job.completed_at = now()
    job.metrics = run_metrics(model, job, job.output) | (job.script.metrics or {})


def cancel(state: ReplicateState, job: Job) -> None:
    if job.terminal:
        return
    job.status = "canceled"
    job.completed_at = now()
    if job.started_at is not None:
        # Canceled runs are charged for the time used [docs]; the fake charges its full predict_time.
        job.metrics = run_metrics(
            state.models.get(job.model) if job.kind == "prediction" else None, job, job.output
        )
    else:
        job.metrics = {"total_time": 0.0}


def advance(state: ReplicateState, job: Job) -> None:
    """One poll's worth of progress."""
    if job.deadline is not None and not job.terminal and now() >= job.deadline:
        # [docs] a deadline before the run starts aborts it; during the run it cancels it.
        if job.started_at is None:
            job.script.outcome = "aborted"
            finish(state, job)
        else:
            cancel(state, job)
    if job.terminal:
        return
    job.polls_seen += 1
    if job.polls_seen >= job.polls_needed:
        finish(state, job)
    else:
        start(job)


async def hold(state: ReplicateState, job: Job, seconds: int) -> bool:
    """Sync mode: run for up to ``seconds``; True when the output is complete."""
    loop = asyncio.get_running_loop()
    run_seconds = job.script.run_seconds
    until = loop.time() + min(run_seconds, seconds)
    while not job.terminal and loop.time() < until:
        await asyncio.sleep(min(0.05, until - loop.time()))
    if job.terminal:
        return True
    if run_seconds > seconds or job.script.sync_status == "starting":
        return False
    if job.script.sync_status == "processing" and outcome(state, job) == "succeeded":
        # Recorded sync responses say "processing" with the whole output present; the next GET ends it.
        start(job)
        job.output = job.planned_output
        job.polls_needed = job.polls_seen + 1
    else:
        finish(state, job)
    return True


def _training_output(state: ReplicateState, job: Job) -> dict[str, Any]:
    destination = state.models[job.destination or job.model]
    source = state.models[job.model].version(job.version)
    number = len(destination.versions) + 1
    new_version = FakeVersion(
        version_id(destination.full_name, number), source.openapi_schema if source else {}
    )
    destination.versions.append(new_version)
    return {
        "version": f"{destination.full_name}:{new_version.id}",
        "weights": f"{job.api_origin}/delivery/{job.id}/weights.tar",
    }


def _lifetime(request: web.Request) -> timedelta | None:
    """The ``Cancel-After`` duration; the deadline counts from creation [spec]."""
    value = request.headers.get("Cancel-After")
    if value is None:
        return None
    match = CANCEL_AFTER.match(value.strip())
    if not match:
        raise problem(400, f"Invalid Cancel-After header: {value!r}", "Invalid Cancel-After")
    plain, hours, minutes, secs = (int(g) if g else 0 for g in match.groups())
    total = plain + hours * 3600 + minutes * 60 + secs
    if total < 5:
        raise problem(400, "Cancel-After must be at least 5 seconds", "Invalid Cancel-After")
    return timedelta(seconds=total)


# --- rendering -----------------------------------------------------------------------------------


def prediction_json(request: web.Request, job: Job) -> dict[str, Any]:
    state = state_of(request)
    return prediction_body(state, state.api_origin(request), job)


def prediction_body(state: ReplicateState, api: str, job: Job) -> dict[str, Any]:
    """A prediction as the API shows it, absolute URLs under ``api``."""
    if job.kind == "training":
        return training_body(api, job)
    urls = {
        "cancel": f"{api}/v1/predictions/{job.id}/cancel",
        "get": f"{api}/v1/predictions/{job.id}",
        "web": f"https://replicate.com/p/{job.id}",
    }
    if job.stream_token:
        urls["stream"] = f"{state.stream_origin}/v1/streams/{job.stream_token}"
    body: dict[str, Any] = {
        "id": job.id,
        "model": job.model,
        "version": job.version,
        "input": job.input,
        "logs": job.logs,
        "output": job.output,
        "data_removed": False,
        "error": job.error,
        "status": job.status,
        "created_at": timestamp(job.created_at),
        "urls": urls,
        "source": "api",
    }
    return body | _times(job) | _webhook(job) | ({"deployment": job.deployment} if job.deployment else {})


def training_json(request: web.Request, job: Job, *, created: bool = False) -> dict[str, Any]:
    return training_body(state_of(request).api_origin(request), job, created=created)


def training_body(api: str, job: Job, *, created: bool = False) -> dict[str, Any]:
    # Recorded quirk: the create response's urls point at /v1/predictions, later ones at /v1/trainings.
    base = f"{api}/v1/{'predictions' if created else 'trainings'}/{job.id}"
    body = {
        "id": job.id,
        "model": job.model,
        "version": job.version,
        "input": job.input,
        "logs": job.logs,
        "output": job.output,
        "error": job.error,
        "status": job.status,
        "created_at": timestamp(job.created_at),
        "urls": {"cancel": f"{base}/cancel", "get": base},
        "source": "api",
    }
    return body | _times(job) | _webhook(job)


def _webhook(job: Job) -> dict[str, Any]:
    """A job created with a webhook shows it, and its filter when it had one."""
    if not job.webhook:
        return {}
    shown: dict[str, Any] = {"webhook": job.webhook}
    if job.webhook_events_filter is not None:
        shown["webhook_events_filter"] = job.webhook_events_filter
    return shown


def _times(job: Job) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if job.started_at:
        extra["started_at"] = timestamp(job.started_at)
    if job.completed_at:
        extra["completed_at"] = timestamp(job.completed_at)
    if job.terminal:
        extra["metrics"] = job.metrics
    if job.deadline:
        extra["deadline"] = timestamp(job.deadline)
    return extra


# --- handlers ------------------------------------------------------------------------------------


async def create_by_version(request: web.Request) -> web.Response:
    body = check_body(await read_json(request), VERSION_CREATE_KEYS, ("version", "input"))
    model, version = _resolve_version(state_of(request), str(body["version"]))
    return await _created(request, model, version, body)


async def create_by_model(request: web.Request) -> web.Response:
    state = state_of(request)
    model = state.models.get(f"{request.match_info['owner']}/{request.match_info['name']}")
    body = check_body(await read_json(request), MODEL_CREATE_KEYS, ("input",))
    if model is None or not model.versions:
        raise not_found()
    return await _created(request, model, model.versions[-1], body)


async def create_by_deployment(request: web.Request) -> web.Response:
    state = state_of(request)
    name = f"{request.match_info['owner']}/{request.match_info['name']}"
    deployment = state.deployments.get(name)
    body = check_body(await read_json(request), MODEL_CREATE_KEYS, ("input",))
    if deployment is None:
        raise not_found()
    release = deployment["current_release"]
    model = state.models[release["model"]]
    return await _created(request, model, model.version(release["version"]) or model.versions[-1], body, name)


async def _created(
    request: web.Request,
    model: FakeModel,
    version: FakeVersion,
    body: dict[str, Any],
    deployment: str | None = None,
) -> web.Response:
    prefer = request.headers.get("Prefer")
    if prefer is not None and not PREFER.match(prefer):
        raise problem(
            400, f"Invalid Prefer header: {prefer!r}; expected wait or wait=1..60", "Invalid Prefer header"
        )
    lifetime = _lifetime(request)
    check_input(model, version, body["input"])
    state = state_of(request)
    job = new_job(request, "prediction", model, version, body, deployment, lifetime)
    headers = {}
    if prefer is not None:
        seconds = int(prefer.partition("=")[2] or 60)
        headers["Preference-Applied"] = prefer
        if not await hold(state, job, seconds):
            headers["Location"] = f"{state.api_origin(request)}/v1/predictions/{job.id}"
    # Every recorded create answered 201, sync or not; the spec's 202 was never seen.
    return web.json_response(prediction_json(request, job), status=201, headers=headers)


def _resolve_version(state: ReplicateState, ref: str) -> tuple[FakeModel, FakeVersion]:
    """``version`` may be a 64-hex id, ``owner/name`` or ``owner/name:id`` [spec]."""
    name, _, wanted = ref.partition(":") if "/" in ref else ("", "", ref)
    candidates = (
        [state.models[name]] if name in state.models else ([] if name else list(state.models.values()))
    )
    for model in candidates:
        version = model.version(wanted) if wanted else (model.versions[-1] if model.versions else None)
        if version is not None:
            return model, version
    raise problem(422, "Invalid version or not permitted", "Invalid version or not permitted")


def _job(request: web.Request, kind: str | None = None) -> Job:
    job = state_of(request).jobs.get(request.match_info["id"])
    if job is None or (kind is not None and job.kind != kind):
        raise not_found()
    return job


async def get_prediction(request: web.Request) -> web.Response:
    job = _job(request)
    state = state_of(request)
    advance(state, job)
    return web.json_response(prediction_json(request, job))


async def cancel_prediction(request: web.Request) -> web.Response:
    job = _job(request)
    cancel(state_of(request), job)
    return web.json_response(prediction_json(request, job))


async def list_predictions(request: web.Request) -> web.Response:
    state = state_of(request)
    jobs = state.predictions
    if request.query.get("source") == "web":
        jobs = []
    for name, keep in (
        ("created_after", lambda j, t: j.created_at > t),
        ("created_before", lambda j, t: j.created_at < t),
    ):
        if name in request.query:
            try:
                moment = datetime.fromisoformat(request.query[name].replace("Z", "+00:00"))
            except ValueError:
                raise problem(400, f"{name} must be an ISO 8601 date-time", "Bad request") from None
            jobs = [j for j in jobs if keep(j, moment)]
    return web.json_response(
        paginate(request, state, jobs, lambda j: j.seq, lambda j: prediction_json(request, j))
    )


async def create_training(request: web.Request) -> web.Response:
    state = state_of(request)
    model = state.models.get(f"{request.match_info['owner']}/{request.match_info['name']}")
    body = check_body(await read_json(request), TRAINING_CREATE_KEYS, ("destination", "input"))
    version = model.version(request.match_info["version"]) if model else None
    if model is None or version is None:
        raise not_found()
    if body["destination"] not in state.models:
        # Recorded verbatim: this 404 carries no title.
        raise problem(404, "The specified training destination does not exist")
    job = new_job(request, "training", model, version, body)
    return web.json_response(training_json(request, job, created=True), status=201)


async def get_training(request: web.Request) -> web.Response:
    job = _job(request, "training")
    state = state_of(request)
    advance(state, job)
    return web.json_response(training_json(request, job))


async def cancel_training(request: web.Request) -> web.Response:
    job = _job(request, "training")
    cancel(state_of(request), job)
    return web.json_response(training_json(request, job))


async def list_trainings(request: web.Request) -> web.Response:
    state = state_of(request)
    jobs = [j for j in state.jobs.values() if j.kind == "training"]
    return web.json_response(
        paginate(request, state, jobs, lambda j: j.seq, lambda j: training_json(request, j))
    )
