"""Replicate predictions as one lifecycle keyed by prediction id: create, polls, list pages, cancel,
webhooks, streams and the unified calls that ran them. This is Replicate's ``ProviderJobs``
(providers/base.py), the log writer's hook: the writer (logs/writer.py) calls it for Replicate's records
and holds no Replicate knowledge itself.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ...errors import GatewayError
from ...usage import Cost, Usage
from ..base import JobsSeen, ProviderApi, Spend
from ..records import JobLedger, LedgerReader, PredictionEnd, PredictionSeen
from .paths import created_kind, is_prediction_create, listed_collection, object_ref
from .pricing import DeploymentHardware, ReplicatePricer, is_terminal, ref_from_path

if TYPE_CHECKING:
    from ...log_record import LogRecord

log = logging.getLogger("modelport.logs")

_READS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
DEPLOYMENT_READ_LIMIT = 1024 * 1024  # a deployment's JSON is a few KB
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


class PredictionLedger:
    """The prediction ledger's rules: each sighting updates the prediction's entry, and the first
    record to see its end prices it. Runs inside the writer's batch (``LogBatch``)."""

    def __init__(self, pricer: ReplicatePricer, hardware: DeploymentHardware) -> None:
        self.pricer = pricer
        self.hardware = hardware

    def deployments_to_look_up(self, log_store: LedgerReader, sightings: list[tuple[Sighting, str | None]]) -> set[tuple[str, str]]:
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

    def apply(self, batch: JobLedger, sighting: Sighting, row: dict[str, Any]) -> Spend | None:
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

    def __init__(self, hardware: DeploymentHardware, timeout: float = 10.0) -> None:
        self.hardware = hardware
        self._timeout = timeout
        self._missing: dict[str, float] = {}

    async def fetch(self, deployment: str, upstream: ProviderApi) -> str | None:
        if self._missing.get(deployment, 0.0) > time.monotonic():
            return None
        try:
            async with asyncio.timeout(self._timeout):
                answer = await upstream.fetch("GET", f"/deployments/{deployment}", DEPLOYMENT_READ_LIMIT)
            if answer.status == 200:
                found = self.hardware.remember(orjson.loads(answer.body))
                if found:
                    return found
            log.warning("deployment %s: hardware lookup answered %s", deployment, answer.status)
        except TimeoutError:
            log.warning("deployment %s: hardware lookup failed: no answer within %g s", deployment, self._timeout)
        except (GatewayError, orjson.JSONDecodeError) as exc:
            log.warning("deployment %s: hardware lookup failed: %s", deployment, exc)
        self._missing[deployment] = time.monotonic() + _MISSING_HARDWARE_TTL
        return None


def lifecycle_cost(record: LogRecord, sightings: list[Sighting]) -> Cost:
    """The provisional cost of a prediction request; the write transaction prices the one row that
    first sees a prediction end (``PredictionLedger``)."""
    if record.gateway_exception or (record.status >= 400 and record.status != 499):
        return Cost(0.0, "priced", basis="not billed: the request failed")
    if not sightings:
        if record.method in _READS and record.prediction_id:  # a signed stream relay of a known prediction
            return Cost(0.0, "priced", basis=f"not billed: a read of prediction {record.prediction_id}, "
                                             "priced on the log that first sees it end")
        if record.method in _READS:
            return Cost(0.0, "priced", basis="not billed: a read")
        return Cost.unpriced("the prediction in the response could not be read (body not captured or cut at the cap)")
    if sightings[0].listed:  # a list page: predictions that end in it are priced onto this row
        return Cost(0.0, "priced", basis="not billed: a read")
    if sightings[0].adds:  # a unified call that ran several: each adds its cost to this row once it ends
        return Cost(0.0, "priced", basis=f"the sum of its {len(sightings)} predictions' costs, each once it ends")
    sighting = sightings[0]
    return Cost.unpriced(f"prediction {sighting.id} is {sighting.status}; its cost is recorded on the log that first sees it end")


class ReplicateJobs:
    """Replicate's ``ProviderJobs``: its predictions, seen in records, priced by the ledger."""

    def __init__(self, pricer: ReplicatePricer, poll_interval: float | None) -> None:
        self.ledger = PredictionLedger(pricer, DeploymentHardware())
        self._lookup = DeploymentLookup(self.ledger.hardware)
        self.poll_interval = poll_interval

    def seen(self, record: LogRecord, request_json: dict[str, Any] | None, response_json: Any) -> JobsSeen | None:
        sightings = sightings_from(record, request_json, response_json)
        if not (sightings or is_prediction_path(record.path) or (record.endpoint == "stream" and record.prediction_id)):
            return None
        return JobsSeen(sightings, lifecycle_cost(record, sightings), sightings[0].model if sightings else None,
                        sightings[0].id if len(sightings) == 1 else None)

    def plain_cost(self, record: LogRecord) -> Cost | None:
        """Replicate bills predictions and trainings only: any other request of its API is free."""
        if "/trainings" in record.path:
            return Cost.unpriced("Replicate trainings are not priced by the gateway")
        return Cost(0.0, "priced", basis="not billed: Replicate bills predictions and trainings only")

    def lookups(self, log_store: LedgerReader, pairs: list[tuple[Sighting, str | None]]) -> set[tuple[str, str]]:
        return self.ledger.deployments_to_look_up(log_store, pairs)

    async def look_up(self, what: str, upstream: ProviderApi) -> None:
        await self._lookup.fetch(what, upstream)

    def settle(self, batch: JobLedger, sighting: Sighting, row: dict[str, Any]) -> Spend | None:
        return self.ledger.apply(batch, sighting, row)

    def poll_path(self, job_id: str) -> str:
        return f"/predictions/{job_id}"


def make_jobs(settings: Any) -> ReplicateJobs:
    pricer = ReplicatePricer.load(settings.replicate_pricing_file, default_hardware=settings.replicate_default_hardware)
    return ReplicateJobs(pricer, settings.replicate_autopoll_interval if settings.replicate_autopoll else None)


def step_of(method: str, path: str) -> str | None:
    """A proxied record's step in a prediction's lifecycle, from its path (``/v1/...``): list, create,
    cancel or poll; None when the path is none of those."""
    replicate_path = path[3:] if path.startswith("/v1/") else path
    if listed_collection(method, replicate_path) == "predictions":
        return "list"
    if created_kind(method, replicate_path) == "prediction":
        return "create"
    if object_ref(replicate_path) is not None:
        if method == "POST" and replicate_path.rstrip("/").endswith("/cancel"):
            return "cancel"
        if method == "GET":
            return "poll"
    return None
