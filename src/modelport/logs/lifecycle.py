"""Replicate predictions as one lifecycle keyed by prediction id: create, polls, list pages, cancel.

Cost is computed once per prediction, by the write transaction that first sees a terminal status:
the log store's ``end_prediction`` writes the end only on an entry that has none (one conditional
update), and tells the one writer that did, however many writers, processes or nodes saw that end at
once. Its cost goes on THAT log row only, so summing ``logs.cost_usd`` counts each prediction once.
The other rows of the lifecycle say where the cost went. The SQL is the log store's (``store/``).

Replicate returns no hardware in predictions (research/replicate.md §5): a deployment's hardware is
read from ``GET /deployments/{owner}/{name}`` with the stored credential and cached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp
import orjson

from ..providers.replicate.paths import is_prediction_create, object_ref
from ..store.log_base import LogBatch, LogStore, PredictionEnd, PredictionSeen
from ..usage import (
    Cost,
    DeploymentHardware,
    ReplicatePricer,
    Usage,
    is_terminal,
    ref_from_path,
)
from .record import Attempt, LogRecord

log = logging.getLogger("modelport.logs")

REPLICATE_API = "https://api.replicate.com/v1"
_MISSING_HARDWARE_TTL = 60.0  # seconds before a failed deployment lookup is tried again


@dataclass(slots=True)
class Sighting:
    """A prediction seen in a response. ``model`` is the model the request named when it named one
    (it wins over the returned model for pricing); ``listed``: seen in a list page, which may update
    a prediction created through the gateway but never adds one."""

    id: str
    status: str | None
    prediction: dict[str, Any]
    model: str | None
    version: str | None
    deployment: str | None
    listed: bool = False
    adds: bool = False  # one of several predictions of one unified call (images, n > 1): costs add on its row


def is_prediction_path(path: str) -> bool:
    """A logged path (``/v1/...``) that creates, reads or cancels one prediction."""
    return _creates(path) or _names_one(path)


def _creates(path: str) -> bool:
    return path.startswith("/v1/") and is_prediction_create(path[3:])


def _names_one(path: str) -> bool:
    ref = object_ref(path[3:]) if path.startswith("/v1/") else None
    return ref is not None and ref.collection == "predictions"


def sightings_from(record: LogRecord, request_json: dict[str, Any] | None, response_json: Any) -> list[Sighting]:
    if record.predictions:  # a unified call (chat, images) that ran them: whatever it answered, they ran
        return _unified_sightings(record)
    if not isinstance(response_json, dict) or not 200 <= record.status < 300:
        return []
    path = record.path
    if record.method == "GET" and path.rstrip("/") == "/v1/predictions":
        results = response_json.get("results")
        return [_sighting(p, None, listed=True) for p in results if _is_prediction(p)] if isinstance(results, list) else []
    if not _is_prediction(response_json):
        return []
    if record.method == "POST" and _creates(path):
        requested = ref_from_path(path, request_json)
        return [_sighting(response_json, requested.model if requested else None, requested.deployment if requested else None)]
    if _names_one(path) and record.method in ("GET", "POST"):
        return [_sighting(response_json, None)]
    return []


def _unified_sightings(record: LogRecord) -> list[Sighting]:
    """The predictions a unified call ran, as it last saw them. The model the call named (``owner/name``
    or ``owner/name:version``) wins for pricing, as a create's path does on the proxy route."""
    named = record.model.partition(":")[0] if record.model and "/" in record.model else None
    found = [_sighting(p, named) for p in record.predictions or () if _is_prediction(p)]
    for sighting in found if len(found) > 1 else ():
        sighting.adds = True
    return found


def _is_prediction(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("id"), str) and "status" in value


def _sighting(prediction: dict[str, Any], model: str | None, deployment: str | None = None, listed: bool = False) -> Sighting:
    returned_model = prediction.get("model") if isinstance(prediction.get("model"), str) else None
    version = prediction.get("version") if isinstance(prediction.get("version"), str) else None
    deployment = deployment or (prediction.get("deployment") if isinstance(prediction.get("deployment"), str) else None)
    status = prediction.get("status") if isinstance(prediction.get("status"), str) else None
    return Sighting(prediction["id"], status, prediction, model or returned_model, version, deployment, listed)


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where and how to reach Replicate for one stored provider."""

    base_url: str
    secret: str


class PredictionLedger:
    """The prediction ledger's rules: each sighting updates the prediction's entry, and the first
    record to see its end prices it. Runs inside the writer's batch (``LogBatch``)."""

    def __init__(self, pricer: ReplicatePricer, hardware: DeploymentHardware) -> None:
        self.pricer = pricer
        self.hardware = hardware

    def deployments_to_look_up(self, log_store: LogStore, sightings: list[tuple[Sighting, str | None]]) -> set[tuple[str, str]]:
        """(deployment, slug) pairs whose hardware is needed to price terminal sightings and not cached."""
        wanted = set()
        for sighting, slug in sightings:
            if not is_terminal(sighting.status):
                continue
            deployment, known_slug = sighting.deployment, slug
            if deployment is None or known_slug is None:
                known = log_store.prediction_entry(sighting.id)
                if known is not None:
                    deployment, known_slug = deployment or known["deployment"], known_slug or known["slug"]
            if deployment and known_slug and self.hardware.get(deployment) is None:
                wanted.add((deployment, known_slug))
        return wanted

    def apply(self, batch: LogBatch, sighting: Sighting, row: dict[str, Any]) -> Spend | None:
        """Record what the sighting shows; when it is the prediction's first end, price it and return what
        its creator (key and provider) spent, for their budgets."""
        if sighting.listed:
            batch.note_listed_status(sighting.id, sighting.status)
        else:
            batch.note_prediction(PredictionSeen(sighting.id, row["provider"] or "replicate", row["slug"], row["key_id"],
                                                 sighting.model, sighting.version, sighting.deployment, sighting.status,
                                                 row["created_at"], row["id"]))
        if not is_terminal(sighting.status):
            return None
        known = batch.prediction_entry(sighting.id)
        if known is None:
            return None
        if known["terminal_at"] is None:
            deployment = known["deployment"] or sighting.deployment
            hardware = self.hardware.get(deployment) if deployment else None
            usage, cost = self.pricer.cost(sighting.prediction, hardware=hardware, model=known["model"] or sighting.model)
            end = PredictionEnd(sighting.status, row["created_at"], row["id"], usage.seconds or None, cost.usd,
                                cost.status, _reason(cost), usage)
            if batch.end_prediction(sighting.id, end):
                if sighting.listed or sighting.adds:
                    _add_cost(row, cost, usage)
                else:
                    _set_cost(row, cost, usage)
                return Spend(known["key_id"], known["slug"], cost.usd, usage.total_tokens)
            known = batch.prediction_entry(sighting.id) or known  # another writer saw the end first
        if not (sighting.listed or sighting.adds):
            _set_cost(row, Cost(0.0, "priced", basis=f"prediction {sighting.id} is priced on log {known['terminal_log_id']}"), None)
        return None


class Spend(NamedTuple):
    """What one ended prediction cost, and whose budgets it counts against."""

    key_id: str | None
    slug: str | None
    cost_usd: float | None
    tokens: int


def _set_cost(row: dict[str, Any], cost: Cost, usage: Usage | None) -> None:
    row["cost_usd"], row["cost_status"], row["cost_reason"] = cost.usd, cost.status, _reason(cost)
    if usage is not None:
        row["usage"] = orjson.dumps(usage).decode()
        row["input_tokens"], row["output_tokens"], row["total_tokens"] = usage.input_tokens, usage.output_tokens, usage.total_tokens


def _add_cost(row: dict[str, Any], cost: Cost, usage: Usage) -> None:
    """A list page in which several predictions end, or a unified call that ran several, carries the sum
    of their costs."""
    reasons = [r for r in (row["cost_reason"] if row["cost_usd"] else None, _reason(cost)) if r]
    if cost.usd is None:
        row["cost_status"], row["cost_usd"] = "unpriced", None
    elif row["cost_status"] != "unpriced":
        row["cost_usd"] = (row["cost_usd"] or 0.0) + cost.usd
        if cost.status == "estimated":
            row["cost_status"] = "estimated"
    row["cost_reason"] = "; ".join(reasons) or None
    for column, amount in (("input_tokens", usage.input_tokens), ("output_tokens", usage.output_tokens),
                           ("total_tokens", usage.total_tokens)):
        row[column] = (row[column] or 0) + amount


def _reason(cost: Cost) -> str | None:
    if cost.reason and cost.basis:
        return f"{cost.reason} ({cost.basis})"
    return cost.reason or cost.basis or None


class DeploymentLookup:
    """Reads deployments' hardware from the Replicate API into ``hardware`` (a TTL cache)."""

    def __init__(self, session: Callable[[], aiohttp.ClientSession], hardware: DeploymentHardware, timeout: float = 10.0) -> None:
        self._session = session
        self.hardware = hardware
        self._timeout = timeout
        self._missing: dict[str, float] = {}

    async def fetch(self, deployment: str, upstream: Upstream) -> str | None:
        if self._missing.get(deployment, 0.0) > time.monotonic():
            return None
        try:
            async with self._session().get(
                f"{upstream.base_url}/deployments/{deployment}",
                headers={"Authorization": f"Bearer {upstream.secret}"},
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as response:
                if response.status == 200:
                    found = self.hardware.remember(orjson.loads(await response.read()))
                    if found:
                        return found
                log.warning("deployment %s: hardware lookup answered %s", deployment, response.status)
        except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            log.warning("deployment %s: hardware lookup failed: %s", deployment, exc)
        self._missing[deployment] = time.monotonic() + _MISSING_HARDWARE_TTL
        return None


@dataclass(frozen=True, slots=True)
class OpenPrediction:
    id: str
    slug: str
    key_id: str | None
    upstream: Upstream


class AutoPoller:
    """Polls predictions nobody polls (fire-and-forget callers), so their cost is recorded too.
    Each poll becomes a log record like any other, tagged ``metadata.modelport_autopoll``."""

    def __init__(
        self,
        find_open: Callable[[], Awaitable[list[OpenPrediction]]],
        session: Callable[[], aiohttp.ClientSession],
        submit: Callable[[LogRecord], None],
        interval: float,
        concurrency: int = 4,
    ) -> None:
        self._find_open = find_open
        self._session = session
        self._submit = submit
        self._interval = interval
        self._limit = asyncio.Semaphore(concurrency)
        self._in_flight: set[str] = set()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                found = await self._find_open()
            except Exception as exc:  # a store busy or away (logs or keys): try again next round
                log.warning("autopoll: could not list open predictions: %s", exc)
                continue
            await asyncio.gather(*(self._poll(p) for p in found if p.id not in self._in_flight))

    async def _poll(self, prediction: OpenPrediction) -> None:
        self._in_flight.add(prediction.id)
        path = f"/v1/predictions/{prediction.id}"
        record = LogRecord(trace_id=f"autopoll-{prediction.id}", method="GET", path=path, provider="replicate",
                           slug=prediction.slug, key_id=prediction.key_id, key_name="modelport autopoll",
                           metadata={"modelport_autopoll": "true"})
        span = Attempt(index="autopoll", provider="replicate", slug=prediction.slug, started_at=time.time())
        record.attempts.append(span)
        started = time.perf_counter()
        try:
            async with self._limit, self._session().get(
                f"{prediction.upstream.base_url}/predictions/{prediction.id}",
                headers={"Authorization": f"Bearer {prediction.upstream.secret}"},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response:
                body = await response.read()
                record.status = span.status = response.status
                record.response_bytes, record.response_body = len(body), body
                record.response_content_type = response.headers.get("content-type", "")
        except (TimeoutError, aiohttp.ClientError) as exc:
            record.status = span.status = 502
            record.error = span.error = f"autopoll failed: {type(exc).__name__}: {exc}"
        finally:
            span.latency_ms = record.latency_ms = (time.perf_counter() - started) * 1000
            record.upstream_latency_ms = span.latency_ms
            self._in_flight.discard(prediction.id)
        self._submit(record)
