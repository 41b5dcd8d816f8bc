"""Everything around predictions: models and versions, deployments, collections, hardware, account,
the webhook secret, and the delivery host standing in for replicate.delivery."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.replicate_catalog import (
    ACCOUNT,
    COLLECTIONS,
    HARDWARE,
    HARDWARE_SKUS,
    WEBHOOK_SECRET,
    FakeModel,
    deployment_json,
    png,
)
from tests.fakes.replicate_predictions import check_body, read_json
from tests.fakes.replicate_state import (
    ReplicateState,
    invalid,
    not_found,
    paginate,
    problem,
    record_of,
    state_of,
)

MODEL_CREATE_KEYS = frozenset(
    {
        "owner",
        "name",
        "visibility",
        "hardware",
        "description",
        "github_url",
        "paper_url",
        "license_url",
        "cover_image_url",
    }
)
MODEL_UPDATE_KEYS = frozenset(
    {"description", "readme", "github_url", "paper_url", "weights_url", "license_url"}
)
DEPLOYMENT_KEYS = frozenset({"name", "model", "version", "hardware", "min_instances", "max_instances"})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/models", list_models)
    router.add_post("/v1/models", create_model)
    router.add_route("QUERY", "/v1/models", search_models)
    router.add_get("/v1/models/{owner}/{name}", get_model)
    router.add_patch("/v1/models/{owner}/{name}", update_model)
    router.add_delete("/v1/models/{owner}/{name}", delete_model)
    router.add_get("/v1/models/{owner}/{name}/readme", get_readme)
    router.add_get("/v1/models/{owner}/{name}/examples", list_examples)
    router.add_get("/v1/models/{owner}/{name}/versions", list_versions)
    router.add_get("/v1/models/{owner}/{name}/versions/{version}", get_version)
    router.add_get("/v1/deployments", list_deployments)
    router.add_post("/v1/deployments", create_deployment)
    router.add_get("/v1/deployments/{owner}/{name}", get_deployment)
    router.add_patch("/v1/deployments/{owner}/{name}", update_deployment)
    router.add_delete("/v1/deployments/{owner}/{name}", delete_deployment)
    router.add_get("/v1/collections", list_collections)
    router.add_get("/v1/collections/{slug}", get_collection)
    router.add_get("/v1/hardware", list_hardware)
    router.add_get("/v1/account", get_account)
    router.add_get("/v1/webhooks/default/secret", get_webhook_secret)
    router.add_get("/delivery/{job}/{file}", deliver)


def model_json(state: ReplicateState, model: FakeModel) -> dict[str, Any]:
    runs = sum(1 for job in state.jobs.values() if job.model == model.full_name)
    return model.json(runs)


def _model(request: web.Request) -> FakeModel:
    model = state_of(request).models.get(f"{request.match_info['owner']}/{request.match_info['name']}")
    if model is None:
        raise not_found()
    return model


# --- models --------------------------------------------------------------------------------------


async def list_models(request: web.Request) -> web.Response:
    state = state_of(request)
    ascending = request.query.get("sort_direction", "desc") == "asc"
    # Both sort keys follow creation order here: every fake model has one version made with it.
    key = (lambda m: -m.seq) if ascending else (lambda m: m.seq)
    page = paginate(request, state, state.models.values(), key, lambda m: model_json(state, m))
    return web.json_response(page)


async def search_models(request: web.Request) -> web.Response:
    state = state_of(request)
    raw = await request.read()
    record_of(request).body = raw
    query = raw.decode("utf-8", "replace").strip().lower()
    found = [
        m for m in state.models.values() if query in m.full_name.lower() or query in m.description.lower()
    ]
    return web.json_response(
        {"next": None, "previous": None, "results": [model_json(state, m) for m in found]}
    )


async def create_model(request: web.Request) -> web.Response:
    state = state_of(request)
    body = check_body(
        await read_json(request), MODEL_CREATE_KEYS, ("owner", "name", "visibility", "hardware")
    )
    if body["visibility"] not in ("public", "private"):
        raise invalid(("enum", "visibility", "visibility must be one of: public, private"))
    if body["hardware"] not in HARDWARE_SKUS:
        raise invalid(("enum", "hardware", f"Invalid hardware SKU: {body['hardware']}"))
    if body["owner"] != ACCOUNT["username"]:
        raise problem(403, "You do not have permission to create models for this owner", "Forbidden")
    full = f"{body['owner']}/{body['name']}"
    if full in state.models:
        raise problem(409, f"A model named {full} already exists", "Conflict")
    urls = {k: body.get(k) for k in ("github_url", "paper_url", "license_url", "cover_image_url")}
    seq = max((m.seq for m in state.models.values()), default=0) + 1
    model = FakeModel(
        body["owner"],
        body["name"],
        seq,
        body.get("description", ""),
        hardware=body["hardware"],
        visibility=body["visibility"],
        urls=urls,
    )
    state.models[full] = model
    return web.json_response(model_json(state, model), status=201)


async def get_model(request: web.Request) -> web.Response:
    return web.json_response(model_json(state_of(request), _model(request)))


async def update_model(request: web.Request) -> web.Response:
    model = _model(request)
    body = check_body(await read_json(request), MODEL_UPDATE_KEYS, ())
    model.description = body.get("description", model.description)
    model.readme = body.get("readme", model.readme)
    model.urls |= {k: v for k, v in body.items() if k.endswith("_url")}
    return web.json_response(model_json(state_of(request), model))


async def delete_model(request: web.Request) -> web.Response:
    model = _model(request)
    if model.versions or model.visibility != "private":
        raise problem(409, "Only private models without versions can be deleted", "Conflict")
    del state_of(request).models[model.full_name]
    return web.Response(status=204)


async def get_readme(request: web.Request) -> web.Response:
    model = _model(request)
    if not model.readme:
        raise not_found()
    return web.Response(text=model.readme, content_type="text/plain")


async def list_examples(request: web.Request) -> web.Response:
    _model(request)
    return web.json_response({"next": None, "previous": None, "results": []})


async def list_versions(request: web.Request) -> web.Response:
    model = _model(request)
    numbered = list(enumerate(model.versions))
    page = paginate(request, state_of(request), numbered, lambda pair: pair[0], lambda pair: pair[1].json())
    return web.json_response(page)


async def get_version(request: web.Request) -> web.Response:
    version = _model(request).version(request.match_info["version"])
    if version is None:
        raise not_found()
    return web.json_response(version.json())


# --- deployments ---------------------------------------------------------------------------------


def _deployment(request: web.Request) -> dict[str, Any]:
    found = state_of(request).deployments.get(f"{request.match_info['owner']}/{request.match_info['name']}")
    if found is None:
        raise not_found()
    return found


def _check_release(state: ReplicateState, fields: dict[str, Any]) -> None:
    model = state.models.get(str(fields.get("model")))
    if model is None or model.version(str(fields.get("version"))) is None:
        raise invalid(("invalid", "version", "The specified model version does not exist"))
    if fields.get("hardware") not in HARDWARE_SKUS:
        raise invalid(("enum", "hardware", f"Invalid hardware SKU: {fields.get('hardware')}"))
    for name, top in (("min_instances", 5), ("max_instances", 20)):
        value = fields.get(name)
        if not isinstance(value, int) or not 0 <= value <= top:
            raise invalid(("range", name, f"{name} must be an integer from 0 to {top}"))


async def list_deployments(request: web.Request) -> web.Response:
    state = state_of(request)
    numbered = list(enumerate(state.deployments.values()))
    page = paginate(request, state, numbered, lambda pair: pair[0], lambda pair: pair[1])
    return web.json_response(page)


async def create_deployment(request: web.Request) -> web.Response:
    state = state_of(request)
    body = check_body(await read_json(request), DEPLOYMENT_KEYS, tuple(sorted(DEPLOYMENT_KEYS)))
    _check_release(state, body)
    full = f"{ACCOUNT['username']}/{body['name']}"
    if full in state.deployments:
        raise problem(409, f"A deployment named {full} already exists", "Conflict")
    state.deployments[full] = deployment_json(
        ACCOUNT["username"],
        body["name"],
        body["model"],
        body["version"],
        body["hardware"],
        body["min_instances"],
        body["max_instances"],
        1,
    )
    # The spec answers deployments.create with 200, not 201.
    return web.json_response(state.deployments[full])


async def get_deployment(request: web.Request) -> web.Response:
    return web.json_response(_deployment(request))


async def update_deployment(request: web.Request) -> web.Response:
    deployment = _deployment(request)
    body = check_body(await read_json(request), DEPLOYMENT_KEYS - {"name", "model"}, ())
    release = deployment["current_release"]
    merged = {"model": release["model"], "version": release["version"], **release["configuration"], **body}
    _check_release(state_of(request), merged)
    # Any change makes a new release [spec].
    fresh = deployment_json(
        deployment["owner"],
        deployment["name"],
        merged["model"],
        merged["version"],
        merged["hardware"],
        merged["min_instances"],
        merged["max_instances"],
        release["number"] + 1,
    )
    deployment["current_release"] = fresh["current_release"]
    return web.json_response(deployment)


async def delete_deployment(request: web.Request) -> web.Response:
    deployment = _deployment(request)
    del state_of(request).deployments[f"{deployment['owner']}/{deployment['name']}"]
    return web.Response(status=204)


# --- small read-only resources -------------------------------------------------------------------


async def list_collections(request: web.Request) -> web.Response:
    numbered = list(enumerate(COLLECTIONS))
    summary = lambda pair: {k: pair[1][k] for k in ("name", "slug", "description")}  # noqa: E731
    return web.json_response(paginate(request, state_of(request), numbered, lambda pair: -pair[0], summary))


async def get_collection(request: web.Request) -> web.Response:
    state = state_of(request)
    found = next((c for c in COLLECTIONS if c["slug"] == request.match_info["slug"]), None)
    if found is None:
        raise not_found()
    models = [model_json(state, state.models[name]) for name in found["models"] if name in state.models]
    return web.json_response({**found, "full_description": found["description"], "models": models})


async def list_hardware(request: web.Request) -> web.Response:
    return web.json_response(HARDWARE)


async def get_account(request: web.Request) -> web.Response:
    return web.json_response(ACCOUNT)


async def get_webhook_secret(request: web.Request) -> web.Response:
    return web.json_response({"key": WEBHOOK_SECRET})


async def deliver(request: web.Request) -> web.Response:
    """Output files; public like replicate.delivery, so no token is needed."""
    job = state_of(request).jobs.get(request.match_info["job"])
    name = request.match_info["file"]
    # A file exists once the job's output names it, which may precede a terminal status [docs].
    if job is None or request.path not in json.dumps(job.output):
        raise not_found()
    if name.endswith(".png"):
        return web.Response(body=png(f"{job.id}/{name}"), content_type="image/png")
    return web.Response(body=f"weights of {job.id}\n".encode(), content_type="application/octet-stream")
