"""Pricing tables shipped as data, an operator's override on top, and the cost of a request.

Token rates are USD per million tokens (``audio_input``: audio input tokens, where a model prices them
apart from text); ``per_image``, ``per_second``, ``per_request`` and ``per_character`` are USD per unit. A cost that cannot be known is ``unpriced`` with a reason, never 0: LiteLLM's silent $0 for
unmapped models under-reported spend for weeks (research/peers.md, PR #35913). A known zero (a local
Ollama model) is ``priced`` at 0.

File format (``data/prices.json``; an override file has the same shape)::

    {"_meta": {...},
     "<provider>": {"_meta": {...},
                    "<model>": {"input": 2.5, "output": 10, "cached_input": 1.25, ...},
                    "*": {...}}}            # optional catch-all for the provider

An override entry replaces the shipped entry of the same provider and model as a whole (no field
merging, so no stale rate survives); ``null`` marks the model unpriced, and keeps it from being
priced as a near name (its snapshots, or a shorter prefix).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import orjson

from modelport.usage.tokens import Usage

CostStatus = Literal["priced", "estimated", "unpriced"]
MatchKind = Literal["exact", "alias", "prefix", "default"]

PER_MILLION = 1_000_000
_CACHE_LIMIT = 4096
# Snapshot and alias suffixes that name the same priced model: -2024-08-06, -20241022, -0613, -001,
# -08-2024 (Cohere), -latest.
_ALIAS_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|\d{3}|\d{2}-\d{4}|latest)$")
# A known name followed by one of these starts a variant of it; "gpt-4" must not price "gpt-4o"
# or "gpt-4.5", so letters and dots are not boundaries.
_PREFIX_BOUNDARIES = "-:@"
# Bedrock's cross-region inference profiles (us.anthropic.claude-…, eu.amazon.nova-pro-v1:0) run the model
# they name at its price: "There's no additional charge for using cross-region inference"
# (aws.amazon.com/bedrock/pricing). ARNs of them reduce to the same name after their last "/".
_INFERENCE_PROFILE = re.compile(r"^(?:us|eu|apac|jp|au|ca|us-gov|global)\.(?=[a-z0-9-]+\.)")


@dataclass(frozen=True, slots=True)
class Cost:
    """``usd`` is None exactly when ``status`` is "unpriced". ``reason`` says why a cost is unpriced
    or estimated; ``basis`` says what was charged (e.g. "gpu-a40-large × 3.2 s")."""

    usd: float | None
    status: CostStatus
    reason: str = ""
    basis: str = ""

    def __post_init__(self) -> None:
        if (self.usd is None) != (self.status == "unpriced"):
            raise ValueError(f"a {self.status} cost cannot have usd={self.usd!r}")

    @classmethod
    def unpriced(cls, reason: str, basis: str = "") -> Cost:
        return cls(None, "unpriced", reason, basis)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Rates that replace the base ones once a request's input exceeds ``above_input_tokens``
    (Gemini Pro over 200k-token prompts, Claude Sonnet's long-context pricing)."""

    above_input_tokens: int
    input: float | None = None
    output: float | None = None
    cached_input: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """One model's list price. ``estimate`` names what the list price leaves out (search fees, image
    sizes); a cost computed from such a price is "estimated"."""

    input: float | None = None
    output: float | None = None
    cached_input: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None
    per_image: float | None = None
    per_second: float | None = None
    per_request: float | None = None
    per_character: float | None = None
    audio_input: float | None = None
    tiers: tuple[PriceTier, ...] = ()
    estimate: str = ""

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], where: str = "price") -> ModelPrice:
        """Validate one data-file entry; a typo or a negative rate fails loudly with its location."""
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: expected an object of rates")
        allowed = {f.name for f in fields(cls)}
        unknown = set(entry) - allowed
        if unknown:
            raise ValueError(f"{where}: unknown price field(s) {sorted(unknown)}")
        rates = {k: parse_rate(v, f"{where}.{k}") for k, v in entry.items() if k not in ("tiers", "estimate")}
        tiers = tuple(_tier(t, f"{where}.tiers[{i}]") for i, t in enumerate(entry.get("tiers") or ()))
        estimate = entry.get("estimate", "")
        if not isinstance(estimate, str):
            raise ValueError(f"{where}.estimate: must be a string")
        return cls(**rates, tiers=tuple(sorted(tiers, key=lambda t: t.above_input_tokens)), estimate=estimate)

    @property
    def is_free(self) -> bool:
        """Every rate given is zero (a local model): the cost is a known 0 even without usage."""
        given = [r for r in _rates_of(self) if r is not None]
        return bool(given) and not any(given) and not self.tiers

    def for_input(self, input_tokens: int) -> ModelPrice:
        """This price with the highest tier the request's input crosses applied."""
        crossed = [t for t in self.tiers if input_tokens > t.above_input_tokens]
        if not crossed:
            return self
        tier = crossed[-1]
        changes = {
            name: getattr(tier, name)
            for name in ("input", "output", "cached_input", "cache_write", "cache_write_1h")
            if getattr(tier, name) is not None
        }
        return ModelPrice(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes, "tiers": ()})


# Looked up once: ``is_free`` reflecting over the fields on every call was a third of ``PriceBook.cost``.
_rates_of = operator.attrgetter(*(f.name for f in fields(ModelPrice) if f.name not in ("tiers", "estimate")))


@dataclass(frozen=True, slots=True)
class PriceMatch:
    """How a model name found its price: ``key`` is the table entry, ``kind`` how it was matched."""

    key: str
    kind: MatchKind
    price: ModelPrice
    free: bool = False  # ``price.is_free``, decided once per cached match rather than per request


# ``None`` is an operator's "unpriced" marker; it stops the name search like a price would.
PriceTables = dict[str, dict[str, ModelPrice | None]]


class PriceBook:
    """Model prices per provider. Lookups are cached (bounded: model names come from callers)."""

    def __init__(self, tables: Mapping[str, Mapping[str, ModelPrice | None]]) -> None:
        self._tables: PriceTables = {
            provider.lower(): {model.lower(): price for model, price in models.items()}
            for provider, models in tables.items()
        }
        self._matches: dict[tuple[str, str], PriceMatch | None] = {}

    @classmethod
    def load(cls, override: str | Path | None = None) -> PriceBook:
        """The shipped tables, with the operator's override file (same format) applied on top."""
        shipped = resources.files("modelport.usage").joinpath("data/prices.json").read_bytes()
        tables = parse_price_tables(shipped, "prices.json")
        if override is not None:
            path = Path(override)
            for provider, models in parse_price_tables(path.read_bytes(), str(path)).items():
                tables.setdefault(provider, {}).update(models)
        return cls(tables)

    @property
    def providers(self) -> frozenset[str]:
        return frozenset(self._tables)

    def match(self, provider: str, model: str) -> PriceMatch | None:
        """Exact name, then the name without a snapshot suffix, path or inference-profile prefix
        (``gpt-4o-2024-08-06`` → ``gpt-4o``, ``models/gemini-2.5-pro`` → ``gemini-2.5-pro``,
        ``us.amazon.nova-pro-v1:0`` → ``amazon.nova-pro-v1:0``), then the longest known prefix
        at a ``-``/``:``/``@`` boundary, then the provider's ``*`` entry."""
        key = (provider.lower(), model.strip().lower())
        if key not in self._matches:
            if len(self._matches) >= _CACHE_LIMIT:
                self._matches.clear()
            self._matches[key] = _find(self._tables.get(key[0], {}), key[1])
        return self._matches[key]

    def price_for(self, provider: str, model: str) -> ModelPrice | None:
        found = self.match(provider, model)
        return found.price if found else None

    def cost(self, provider: str, model: str, usage: Usage | None) -> Cost:
        """The cost of one request. A provider-reported cost wins over the list price."""
        if usage is not None and usage.reported_usd is not None:
            return Cost(usage.reported_usd, "priced", basis=f"reported by {provider}")
        found = self.match(provider, model)
        if found is None:
            return Cost.unpriced(f"no price for model {provider}/{model}")
        if found.free:
            return Cost(0.0, "priced", basis=f"{provider}/{found.key}: free")
        if usage is None:
            return Cost.unpriced(f"no usage reported for {provider}/{model}")
        return _charge(provider, model, found, usage)


def parse_price_tables(raw: bytes | str, source: str = "prices") -> dict[str, dict[str, ModelPrice | None]]:
    """Parse and validate a price file; a ``null`` entry is kept as ``None`` (unpriced marker)."""
    document = orjson.loads(raw)
    if not isinstance(document, dict):
        raise ValueError(f"{source}: expected a JSON object of providers")
    tables: dict[str, dict[str, ModelPrice | None]] = {}
    for provider, models in document.items():
        if provider.startswith("_"):
            continue
        if not isinstance(models, dict):
            raise ValueError(f"{source}: {provider}: expected an object of models")
        tables[provider.lower()] = {
            model.lower(): None if entry is None else ModelPrice.from_dict(entry, f"{source}: {provider}/{model}")
            for model, entry in models.items()
            if not model.startswith("_")
        }
    return tables


def _find(table: Mapping[str, ModelPrice | None], name: str) -> PriceMatch | None:
    found = _find_key(table, name)
    if found is None:
        return None
    key, kind = found
    price = table[key]
    return PriceMatch(key, kind, price, price.is_free) if price is not None else None


def _find_key(table: Mapping[str, ModelPrice | None], name: str) -> tuple[str, MatchKind] | None:
    if name in table:
        return name, "exact"
    bare = _INFERENCE_PROFILE.sub("", name.rsplit("/", 1)[-1])
    for alias in dict.fromkeys((bare, _ALIAS_SUFFIX.sub("", name), _ALIAS_SUFFIX.sub("", bare))):
        if alias != name and alias in table:
            return alias, "alias"
    prefixes = [k for k in table if k != "*" and (_is_variant(name, k) or _is_variant(bare, k))]
    if prefixes:
        return max(prefixes, key=len), "prefix"
    return ("*", "default") if "*" in table else None


def _is_variant(name: str, known: str) -> bool:
    return len(name) > len(known) and name.startswith(known) and name[len(known)] in _PREFIX_BOUNDARIES


def _charge(provider: str, model: str, found: PriceMatch, usage: Usage) -> Cost:
    price = found.price.for_input(usage.input_tokens)
    missing: list[str] = []
    total = 0.0
    basis: list[str] = []
    for label, quantity, rate, unit in _lines(price, usage):
        if not quantity:
            continue
        if rate is None:
            missing.append(label)
            continue
        total += quantity * rate / unit
        basis.append(f"{_amount(quantity)} {label}")
    name = f"{provider}/{found.key}"
    if missing:
        return Cost.unpriced(f"no {', '.join(missing)} price for {name}", basis=", ".join(basis))
    described = f"{name}: {', '.join(basis) or 'nothing billable'}"
    if found.kind == "prefix":
        return Cost(total, "estimated", f"priced as {name}, the longest known prefix of {model!r}", described)
    if price.estimate:
        return Cost(total, "estimated", price.estimate, described)
    return Cost(total, "priced", basis=described)


def _lines(price: ModelPrice, usage: Usage) -> list[tuple[str, float, float | None, int]]:
    """(label, quantity, rate, unit) for everything the usage could be billed for."""
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    written = min(usage.cache_write_tokens, usage.input_tokens - cached)
    written_1h = min(int(usage.extra.get("cache_write_1h_tokens", 0)), written)
    # A table that gives no cache rate means the provider does not discount: charge the input rate.
    cache_read_rate = price.input if price.cached_input is None else price.cached_input
    cache_write_rate = price.input if price.cache_write is None else price.cache_write
    text_input = usage.input_tokens - cached - written
    # Audio input tokens at their own rate only where the table gives one (gpt-4o-transcribe).
    audio = min(int(usage.extra.get("audio_input_tokens", 0)), text_input) if price.audio_input is not None else 0
    lines = [
        ("input tokens", text_input - audio, price.input, PER_MILLION),
        ("audio input tokens", audio, price.audio_input, PER_MILLION),
        ("cached input tokens", cached, cache_read_rate, PER_MILLION),
        ("cache-write tokens", written - written_1h, cache_write_rate, PER_MILLION),
        ("1h cache-write tokens", written_1h, cache_write_rate if price.cache_write_1h is None else price.cache_write_1h,
         PER_MILLION),
        ("output tokens", usage.output_tokens, price.output, PER_MILLION),
        ("images", usage.images, price.per_image, 1),
        ("s", usage.seconds, price.per_second, 1),
        ("characters", usage.characters, price.per_character, 1),
    ]
    if price.per_request is not None:
        lines.append(("requests", usage.requests, price.per_request, 1))
    return lines


def _amount(quantity: float) -> str:
    return f"{quantity:g}" if isinstance(quantity, float) else str(quantity)


def parse_rate(value: Any, where: str) -> float:
    """A price from a data file: a non-negative number, or an error naming where it was."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{where}: a price must be a non-negative number, got {value!r}")
    return float(value)


def _tier(entry: Any, where: str) -> PriceTier:
    if not isinstance(entry, dict) or "above_input_tokens" not in entry:
        raise ValueError(f"{where}: a tier needs above_input_tokens")
    allowed = {f.name for f in fields(PriceTier)}
    unknown = set(entry) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown tier field(s) {sorted(unknown)}")
    threshold = entry["above_input_tokens"]
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise ValueError(f"{where}.above_input_tokens: must be a non-negative integer")
    rates = {k: parse_rate(v, f"{where}.{k}") for k, v in entry.items() if k != "above_input_tokens"}
    return PriceTier(threshold, **rates)
