"""What a Replicate prediction cost, from the prediction object alone plus hardware the caller knows.

Replicate returns no price and no hardware SKU in predictions, models or versions, and has no pricing
API (research/replicate.md §5; replicate-python#243, replicate-javascript#360). So:

- official models (billed per output) use a per-model table: tokens from ``metrics.input_token_count``
  / ``output_token_count``, images from the output list, or seconds of generated video;
- everything else costs ``metrics.predict_time`` × the per-second price of its hardware, found as:
  the deployment's hardware (the caller reads ``GET /deployments/{o}/{n}`` and caches it with
  ``DeploymentHardware``) → the model→hardware map → the default SKU, flagged "estimated".

Canceled predictions are charged for the time they ran; ``aborted`` ones (deadline passed before
start) are not charged [Replicate billing docs]. Cost is computed once per prediction id, when the
gateway first sees a terminal status; that dedup is the caller's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import orjson

from ...usage.pricing import PER_MILLION, Cost, parse_rate
from ...usage.tokens import Usage
from .paths import created_model

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})
# The statuses the prediction view (/v1/logs/predictions, the CLI) filters on.
PREDICTION_STATUSES = ("starting", "processing", "succeeded", "failed", "canceled")
HardwareSource = Literal["deployment", "model map", "default"]

_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")


def is_terminal(status: str | None) -> bool:
    return status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class PredictionRef:
    """Which model a prediction runs: ``model`` and ``deployment`` are ``owner/name``."""

    model: str | None = None
    version: str | None = None
    deployment: str | None = None

    @property
    def is_official(self) -> bool:
        # Official models answer with version "hidden" or an id like "dp-a557b7..." rather than a
        # 64-hex version id (research/replicate.md §1.2).
        return isinstance(self.version, str) and not _VERSION_ID.match(self.version)


def ref_from_prediction(prediction: Mapping[str, Any]) -> PredictionRef:
    return PredictionRef(
        model=_str(prediction.get("model")),
        version=_str(prediction.get("version")),
        deployment=_str(prediction.get("deployment")),
    )


def ref_from_path(path: str, body: Mapping[str, Any] | None = None) -> PredictionRef | None:
    """The model a create request names: ``/models/{o}/{n}/predictions``,
    ``/deployments/{o}/{n}/predictions``, or ``/predictions`` with ``version`` in the body (a version
    id, ``owner/name`` or ``owner/name:version``). ``/v1`` may lead; a query string is ignored."""
    path = path.split("?", 1)[0]
    path = path[3:] if path.startswith("/v1/") else path
    named = created_model(path)  # the one recognizer of prediction paths (paths.py)
    if named is None:
        return None
    kind, target = named
    if kind == "deployments":
        return PredictionRef(deployment=target)
    if kind == "models":
        return PredictionRef(model=target)
    version = _str((body or {}).get("version"))
    if version is None:
        return PredictionRef()
    if ":" in version:
        model, _, version_id = version.partition(":")
        return PredictionRef(model=model, version=version_id)
    return PredictionRef(model=version) if "/" in version else PredictionRef(version=version)


def prediction_usage(prediction: Mapping[str, Any]) -> Usage:
    """Usage recorded even when no price is known: predict_time, total_time and token counts."""
    metrics = _metrics(prediction)
    total_time = _number(metrics.get("total_time"))
    return Usage(
        input_tokens=int(_number(metrics.get("input_token_count")) or 0),
        output_tokens=int(_number(metrics.get("output_token_count")) or 0),
        seconds=_number(metrics.get("predict_time")) or 0.0,
        extra={"total_time": total_time} if total_time is not None else {},
    )


@dataclass(frozen=True, slots=True)
class OfficialPrice:
    """An official model's per-output price: tokens in USD per 1M, ``per_image`` per output item,
    ``per_second`` per second of ``predict_time``, ``per_output_second`` per second of generated
    media (read from ``input.duration``, else ``default_duration``)."""

    input: float | None = None
    output: float | None = None
    per_image: float | None = None
    per_second: float | None = None
    per_output_second: float | None = None
    default_duration: float | None = None

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], where: str) -> OfficialPrice:
        allowed = {f.name for f in fields(cls)}
        if set(entry) - allowed:
            raise ValueError(f"{where}: unknown price field(s) {sorted(set(entry) - allowed)}")
        return cls(**{k: parse_rate(v, f"{where}.{k}") for k, v in entry.items()})


@dataclass(frozen=True, slots=True)
class ReplicateTables:
    """``hardware``: USD per second by SKU; ``models``: ``owner/name`` (or ``owner/name:version``) →
    SKU; ``official``: ``owner/name`` → per-output price; ``default_hardware``: SKU assumed otherwise."""

    hardware: Mapping[str, float]
    models: Mapping[str, str]
    official: Mapping[str, OfficialPrice]
    default_hardware: str


class ReplicatePricer:
    def __init__(self, tables: ReplicateTables) -> None:
        self.tables = tables

    @classmethod
    def load(cls, override: str | Path | None = None, *, default_hardware: str | None = None) -> ReplicatePricer:
        """Shipped ``data/replicate.json``, an operator file of the same shape on top (per-key;
        ``null`` removes a key), and an optional default-SKU setting on top of both."""
        shipped = resources.files("modelport.providers.replicate").joinpath("data/replicate.json").read_bytes()
        document = _merge_documents(
            orjson.loads(shipped), orjson.loads(Path(override).read_bytes()) if override else {}
        )
        if default_hardware:
            document["default_hardware"] = default_hardware
        return cls(parse_replicate_tables(document))

    def hardware_for(
        self, ref: PredictionRef, hardware: str | None = None, model: str | None = None
    ) -> tuple[str, HardwareSource]:
        if hardware:
            return hardware, "deployment"
        for name in _names(model, ref.model):
            mapped = self.tables.models.get(f"{name}:{ref.version}") or self.tables.models.get(name)
            if mapped:
                return mapped, "model map"
        return self.tables.default_hardware, "default"

    def cost(
        self, prediction: Mapping[str, Any], *, hardware: str | None = None, model: str | None = None
    ) -> tuple[Usage, Cost]:
        """Usage and cost of a prediction. ``hardware`` is the deployment's SKU when the caller knows
        it; ``model`` is the model the request named, which wins over the returned ``model`` (a
        request for meta/llama-2-70b-chat was answered as replicate/lifeboat-70b [rec])."""
        usage = prediction_usage(prediction)
        status = _str(prediction.get("status"))
        if not is_terminal(status):
            return usage, Cost.unpriced(f"prediction is {status or 'without a status'}; its cost is known once it ends")
        if status == "aborted":
            return usage, Cost(0.0, "priced", basis="aborted before it started: not charged")
        ref = ref_from_prediction(prediction)
        for name in _names(model, ref.model):
            if name in self.tables.official:
                return usage, _official_cost(name, self.tables.official[name], prediction, usage)
        return usage, self._time_cost(ref, prediction, hardware, model)

    def _time_cost(
        self, ref: PredictionRef, prediction: Mapping[str, Any], hardware: str | None, model: str | None
    ) -> Cost:
        sku, source = self.hardware_for(ref, hardware, model)
        if source == "default" and ref.is_official:
            # Official models are billed per output, not by time: a guessed SKU would be wrong.
            return Cost.unpriced(f"official model {model or ref.model} has no per-output price entry")
        predict_time = _number(_metrics(prediction).get("predict_time"))
        if predict_time is None:
            return Cost.unpriced("prediction has no metrics.predict_time")
        rate = self.tables.hardware.get(sku)
        if rate is None:
            return Cost.unpriced(f"no price for Replicate hardware {sku}")
        basis = f"{sku} × {predict_time:g} s"
        if source == "default":
            who = model or ref.model or ref.deployment or "this model"
            return Cost(
                predict_time * rate, "estimated", f"hardware of {who} unknown; assumed the default {sku}", basis
            )
        return Cost(predict_time * rate, "priced", basis=basis)


class DeploymentHardware:
    """The hardware of deployments, as read from the deployments API, for ``ttl`` seconds: a
    deployment's hardware changes only with a new release, and every prediction needs it."""

    def __init__(self, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._known: dict[str, tuple[str, float]] = {}

    def get(self, deployment: str) -> str | None:
        known = self._known.get(deployment)
        if known is None or self._clock() >= known[1]:
            return None
        return known[0]

    def put(self, deployment: str, hardware: str) -> None:
        self._known[deployment] = (hardware, self._clock() + self._ttl)

    def remember(self, deployment_object: Mapping[str, Any]) -> str | None:
        """Cache the hardware of a ``GET /deployments/{o}/{n}`` body; returns it."""
        hardware = hardware_from_deployment(deployment_object)
        owner, name = _str(deployment_object.get("owner")), _str(deployment_object.get("name"))
        if hardware and owner and name:
            self.put(f"{owner}/{name}", hardware)
        return hardware


def hardware_from_deployment(deployment_object: Mapping[str, Any]) -> str | None:
    """``current_release.configuration.hardware`` of a deployment object [spec]."""
    release = deployment_object.get("current_release")
    configuration = release.get("configuration") if isinstance(release, Mapping) else None
    return _str(configuration.get("hardware")) if isinstance(configuration, Mapping) else None


def parse_replicate_tables(document: Mapping[str, Any]) -> ReplicateTables:
    hardware = {
        sku: parse_rate(rate, f"replicate hardware.{sku}") for sku, rate in _section(document, "hardware").items()
    }
    models = {name: sku for name, sku in _section(document, "models").items() if isinstance(sku, str)}
    official = {
        name: OfficialPrice.from_dict(entry, f"replicate official.{name}")
        for name, entry in _section(document, "official").items()
    }
    default = document.get("default_hardware")
    if not isinstance(default, str) or default not in hardware:
        raise ValueError(f"replicate default_hardware {default!r} is not in the hardware price table")
    return ReplicateTables(hardware, models, official, default)


def _official_cost(name: str, price: OfficialPrice, prediction: Mapping[str, Any], usage: Usage) -> Cost:
    metrics = _metrics(prediction)
    total = 0.0
    basis: list[str] = []
    estimate = ""
    if price.input is not None or price.output is not None:
        if "input_token_count" not in metrics and "output_token_count" not in metrics:
            return Cost.unpriced(f"no token counts in metrics of {name}")
        total += usage.input_tokens * (price.input or 0.0) / PER_MILLION
        total += usage.output_tokens * (price.output or 0.0) / PER_MILLION
        basis.append(f"{usage.input_tokens} input + {usage.output_tokens} output tokens")
    if price.per_image is not None:
        count = _output_count(prediction)
        if count is None:
            return Cost.unpriced(f"output of {name} is no longer available; image count unknown")
        usage.images = count
        total += count * price.per_image
        basis.append(f"{count} images")
    if price.per_second is not None:
        predict_time = _number(metrics.get("predict_time"))
        if predict_time is None:
            return Cost.unpriced(f"no metrics.predict_time for {name}")
        total += predict_time * price.per_second
        basis.append(f"{predict_time:g} s")
    if price.per_output_second is not None:
        seconds = _output_seconds(prediction, price)
        if seconds is None:
            return Cost.unpriced(f"length of the output of {name} unknown")
        usage.extra["output_seconds"] = seconds
        total += seconds * price.per_output_second
        basis.append(f"{seconds:g} s of output")
        estimate = "output length taken from the requested duration"
    described = f"replicate/{name}: {', '.join(basis) or 'nothing billable'}"
    if estimate:
        return Cost(total, "estimated", estimate, described)
    return Cost(total, "priced", basis=described)


def _output_count(prediction: Mapping[str, Any]) -> int | None:
    output = prediction.get("output")
    if isinstance(output, list):
        return len(output)
    if output:
        return 1
    # No output: a canceled or failed prediction produced none; a succeeded one had it removed.
    return None if prediction.get("status") == "succeeded" else 0


def _output_seconds(prediction: Mapping[str, Any], price: OfficialPrice) -> float | None:
    if prediction.get("status") != "succeeded":
        return 0.0
    inputs = prediction.get("input")
    duration = _number(inputs.get("duration")) if isinstance(inputs, Mapping) else None
    return duration if duration is not None else price.default_duration


def _merge_documents(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in base.items()}
    for key, value in layer.items():
        if key.startswith("_"):
            continue
        if isinstance(value, dict):
            section = merged.setdefault(key, {})
            for name, entry in value.items():
                if entry is None:
                    section.pop(name, None)
                else:
                    section[name] = entry
        else:
            merged[key] = value
    return merged


def _section(document: Mapping[str, Any], key: str) -> dict[str, Any]:
    section = document.get(key) or {}
    if not isinstance(section, dict):
        raise ValueError(f"replicate {key}: expected an object")
    return {name: entry for name, entry in section.items() if not name.startswith("_")}


def _names(*names: str | None) -> list[str]:
    return list(dict.fromkeys(n for n in names if n))


def _metrics(prediction: Mapping[str, Any]) -> Mapping[str, Any]:
    metrics = prediction.get("metrics")
    return metrics if isinstance(metrics, Mapping) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
