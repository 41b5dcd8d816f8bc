"""``/v1/logs/predictions`` and ``/v1/logs/predictions/{id}``: Replicate predictions as one row each, from
their ledger, with the log records of each as its lifecycle. The reading is ``logs/predictions.py``;
this module checks the query and describes the replies. Same scope as the logs (``logs.read``): the
logs are an admin view, so tenant isolation of predictions does not narrow it.
"""

from __future__ import annotations

from typing import Any

from ..errors import NotFound
from ..logs import predictions as view
from ..logs.predictions import MAX_LIFECYCLE_RECORDS
from ..providers.replicate.pricing import PREDICTION_STATUSES
from ..store import PredictionFilter, Store
from ..store.log_base import MAX_LIMIT
from .logs import FilterQuery, instant, log_store_of
from .router import Request, Route
from .schema import integer, text

_NUMBER = {"type": ["number", "null"]}
_INTEGER = {"type": ["integer", "null"]}
_TEXT = {"type": ["string", "null"]}


class PredictionQuery(FilterQuery):
    matches_metadata = False


_PREDICTION_FILTERS = (
    instant("since", "Only predictions created at or after this time (ISO 8601 or epoch ms)."),
    instant("until", "Only predictions created before this time (ISO 8601 or epoch ms)."),
    text("status", "Replicate's status, as last seen by the gateway.", enum=PREDICTION_STATUSES),
    text("model", "owner/name of the model.", max_length=500),
    text("key_id", "Gateway API key id that created the prediction.", max_length=200),
    text("slug", "Stored provider slug (without @).", max_length=200),
)
PREDICTIONS = PredictionQuery((
    *_PREDICTION_FILTERS,
    integer("limit", "Predictions per page.", minimum=1, maximum=MAX_LIMIT, default=50),
    text("cursor", "next_cursor of the previous page.", max_length=500),
))  # fmt: skip


def list_predictions(store: Store, request: Request) -> dict[str, Any]:
    query = request.query
    filters = PredictionFilter(**{f.name: query[f.name] for f in _PREDICTION_FILTERS if f.name in query})
    rows, next_cursor = view.list_predictions(log_store_of(request), filters, query.get("limit", 50), query.get("cursor"))
    return {"object": "list", "data": rows, "next_cursor": next_cursor}


def retrieve_prediction(store: Store, request: Request) -> dict[str, Any]:
    prediction_id = request.params["prediction_id"]
    found = view.get_prediction(log_store_of(request), prediction_id)
    if found is None:
        raise NotFound(f"no prediction {prediction_id[:60]!r} was seen through the gateway")
    return found


_PREDICTION_PROPERTIES: dict[str, Any] = {
    "object": {"const": "prediction"}, "id": {"type": "string"}, "provider": {"type": "string"}, "slug": _TEXT,
    "key_id": {**_TEXT, "description": "Gateway API key that created it."},
    "status": {**_TEXT, "description": "Replicate's status as last seen; final once ended_at is set."},
    "model": _TEXT, "version": _TEXT, "deployment": _TEXT,
    "created_at": {"type": "string", "format": "date-time"},
    "ended_at": {"type": ["string", "null"], "format": "date-time",
                 "description": "When the gateway first saw a terminal status; null while running."},
    "predict_time": {**_NUMBER, "description": "Replicate's metrics.predict_time, in seconds."},
    "cost_usd": {**_NUMBER, "description": "null while running or when the cost is unknown (cost_status unpriced)."},
    "cost_status": {"enum": ["priced", "estimated", "unpriced", None]},
    "cost_reason": {**_TEXT, "description": "How the cost was found: the hardware and seconds, or the token prices."},
    "usage": {"type": ["object", "null"]},
    "first_log_id": _TEXT, "ended_on_log_id": {**_TEXT, "description": "The log record that first saw the end."},
}  # fmt: skip
PREDICTION = {"type": "object", "properties": _PREDICTION_PROPERTIES, "required": list(_PREDICTION_PROPERTIES)}
_STEP = {
    "type": "object",
    "properties": {
        "log_id": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"},
        "step": {"enum": ["create", "poll", "autopoll", "webhook received", "webhook delivery", "cancel", "list",
                          "stream", "chat", "images", "messages", "responses", "other"]},
        "method": _TEXT, "path": _TEXT, "status": _INTEGER, "latency_ms": _NUMBER, "key_id": _TEXT,
        "key_name": _TEXT, "error": _TEXT,
        "saw_status": {**_TEXT, "description": "The prediction's status in the body logged; null if not kept."},
        "saw_end": {"type": "boolean", "description": "This record first saw the end: the cost was found here."},
    },
    "required": ["log_id", "created_at", "step", "method", "path", "status", "saw_status", "saw_end"],
}  # fmt: skip
PREDICTION_DETAIL = {
    "type": "object",
    "properties": {**_PREDICTION_PROPERTIES, "lifecycle": {"type": "array", "items": _STEP},
                   "lifecycle_truncated": {"type": "boolean",
                                           "description": f"more than {MAX_LIFECYCLE_RECORDS} records: the newest left out"}},
    "required": [*_PREDICTION_PROPERTIES, "lifecycle", "lifecycle_truncated"],
}  # fmt: skip
PREDICTIONS_REPLY = {
    "type": "object",
    "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": PREDICTION},
                   "next_cursor": {**_TEXT, "description": "Pass as cursor for the next page; null on the last."}},
    "required": ["object", "data", "next_cursor"],
}  # fmt: skip

ROUTES = (
    Route("GET", "/logs/predictions", "logs.read", list_predictions,
          "List Replicate predictions seen through the gateway, newest first: final status, predict time, cost",
          "Logs", PREDICTIONS_REPLY, query=PREDICTIONS),
    Route("GET", "/logs/predictions/{prediction_id}", "logs.read", retrieve_prediction,
          "One prediction with its cost and its lifecycle: every log record of it, oldest first", "Logs",
          PREDICTION_DETAIL),
)  # fmt: skip
