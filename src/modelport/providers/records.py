"""What providers' hooks keep in the store, as they see it: the values they hand it and the few calls they
make on it. The store (``store/``, a layer above) implements these (``Store``, ``LogBatch``, ``LogStore``
have every call here); a provider names only these, so it imports nothing of the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class WebhookRelayRow:
    """Where the caller of one prediction (or training) wants its webhook events."""

    key_id: str
    url: str
    events: tuple[str, ...]  # of "start", "output", "logs", "completed"


@dataclass(frozen=True, slots=True)
class PredictionSeen:
    """A prediction as one response showed it, for the ledger: the first sighting creates the entry,
    later ones fill what it lacks and move the status until the prediction has ended."""

    id: str
    provider: str
    slug: str | None
    key_id: str | None
    model: str | None
    version: str | None
    deployment: str | None
    status: str | None
    created_at: int  # epoch ms of the log record that saw it
    log_id: str


@dataclass(frozen=True, slots=True)
class PredictionEnd:
    """What the first record to see a prediction's end writes on its entry."""

    status: str
    ended_at: int  # epoch ms of that log record
    log_id: str
    predict_time: float | None
    cost_usd: float | None
    cost_status: str
    cost_reason: str | None
    usage: Any  # what was billed, JSON-serialisable (``usage.Usage``, a dataclass)


class PolicyStore(Protocol):
    """What a provider's proxy policy keeps (Replicate's isolation and webhook relay): the owners of
    objects created on a shared account, where their callers want webhook events, and webhook receipts.
    ``store.base.Store`` documents each call."""

    def record_owners(self, owners: Sequence[tuple[str, str, str, str]]) -> None: ...

    def owners_of(self, slug: str, object_ids: Sequence[str]) -> dict[str, str]: ...

    def record_webhook(self, slug: str, object_id: str, key_id: str, url: str, events: Sequence[str]) -> None: ...

    def webhook_of(self, slug: str, object_id: str) -> WebhookRelayRow | None: ...

    def first_receipt(self, slug: str, webhook_id: str, forget_before_ms: int) -> bool: ...


class LedgerReader(Protocol):
    """The ledger as read outside a write (``store.log_base.LogStore``)."""

    def prediction_entry(self, prediction_id: str) -> dict[str, Any] | None: ...


class JobLedger(LedgerReader, Protocol):
    """The ledger inside the log writer's transaction (``store.log_base.LogBatch``), where a provider's
    jobs hook settles what a record saw."""

    def note_prediction(self, seen: PredictionSeen) -> None: ...

    def note_listed_status(self, prediction_id: str, status: str | None) -> None: ...

    def end_prediction(self, prediction_id: str, end: PredictionEnd) -> bool: ...
