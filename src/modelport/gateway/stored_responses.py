"""The gateway's own store of Responses conversations, for providers whose Responses API is translated
over chat (every chat provider but OpenAI and Azure OpenAI, which keep their own).

- **Continuing** (``begin_turn``, called by the attempt once the unified call is prepared): a request
  naming ``previous_response_id`` gets the stored conversation (one row, store/responses.py: the earlier
  turns' input items and that response's output) put in front of its ``input``, then is translated as
  any other. The earlier turns' ``instructions`` are not carried over (OpenAI's rule: only this
  request's apply). An id that is unknown, expired, deleted or another key's is OpenAI's 400
  ``previous_response_not_found`` (errors.py); admin keys may continue any key's.
- **Keeping** (``Turn``): unless the request says ``"store": false``, the completed (or incomplete)
  response is stored before the client sees it whole (the non-streamed body is sent after the write; a
  stream's last event waits for it), so the client's next turn, on any worker or node, finds it. The
  write runs in a thread: on PostgreSQL it is a network round trip the event loop must not wait on. If
  it fails, the answer still goes out: non-streamed it says ``"store": false``; streamed (its last event
  already built) the log record's error and the worker's log say so.
- **Privacy**: with ``log_bodies`` off (the setting, or the key's own flag) nothing is stored and
  responses say ``"store": false``: a stored conversation is the same prompts and answers the operator
  chose not to keep.
- **Retrieving** (``answers``/``answer``): ``GET`` and ``DELETE /v1/responses/{id}`` and ``GET
  /v1/responses/{id}/input_items`` on such a provider are answered from the store in OpenAI's shapes;
  on OpenAI and Azure they take the proxy route to the provider's own store, as before.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from ..errors import BadRequest, PreviousResponseNotFound, quoted
from ..providers.base import Answer, ProviderSpec
from ..providers.registry import serves
from ..providers.responses_over_chat import new_id
from ..settings import Settings
from ..store.responses import ResponseStore, StoredResponse

if TYPE_CHECKING:
    from .auth import Principal
    from .forward import Outbound
    from .unified import UnifiedCall

log = logging.getLogger("modelport.gateway")

DAY_MS = 86_400_000
_RESPONSE_PATH = re.compile(r"/responses/([^/]{1,200})(/input_items)?")  # any id: the store answers for it
_ITEM_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}
# OpenAI's list of input items: at most 100 a page, 20 unless asked, newest first.
PAGE_DEFAULT, PAGE_MAX = 20, 100


def over_chat(spec: ProviderSpec) -> bool:
    """Whether ``spec`` serves Responses translated over its chat API (and so through this store)."""
    return "responses" not in spec.unified and serves(spec, "responses")


class StoredResponses:
    """One per gateway: the store, the retention and the privacy setting."""

    def __init__(self, store: ResponseStore, settings: Settings) -> None:
        self.store = store
        self.retention_ms = settings.responses_retention_days * DAY_MS
        self.keeps_bodies = settings.log_bodies

    async def begin_turn(self, call: "UnifiedCall", principal: "Principal") -> None:
        """Put the earlier turns in front of ``call``'s input, and ready the keeping of its answer."""
        body = call.body
        keep = body.get("store") is not False and self.keeps_bodies and principal.log_bodies
        previous = body.get("previous_response_id")
        if previous is None:
            call.body = {**body, "store": keep}  # never the parsed body itself: a fallback's attempt reads it
            if keep:
                call.turn = Turn(self, _owner(principal), call.leaf.resolved.spec.id, _as_items(body.get("input")))
            return
        if not isinstance(previous, str) or not previous:
            raise BadRequest("'previous_response_id' must be the id of an earlier response (resp_...).",
                             code="untranslatable_request")
        stored = await asyncio.to_thread(self.store.stored_response, previous, _reader(principal), _now_ms())
        if stored is None:
            raise PreviousResponseNotFound(previous)
        items = stored.items + list(stored.response.get("output") or []) + _as_items(body.get("input"))
        call.body = {**body, "input": items, "store": keep}
        if keep:
            call.turn = Turn(self, _owner(principal), call.leaf.resolved.spec.id, items)

    def answers(self, outbound: "Outbound", spec: ProviderSpec) -> bool:
        """Whether this proxied request is a read or delete of a response this store holds for ``spec``."""
        return (outbound.path.startswith("/responses/") and outbound.method in ("GET", "DELETE") and over_chat(spec)
                and _RESPONSE_PATH.fullmatch(outbound.path) is not None)

    async def answer(self, outbound: "Outbound", principal: "Principal") -> Answer:
        match = _RESPONSE_PATH.fullmatch(outbound.path)
        assert match is not None
        response_id, listing = match.group(1), match.group(2) is not None
        reader = _reader(principal)
        if outbound.method == "DELETE" and not listing:
            deleted = await asyncio.to_thread(self.store.delete_stored_response, response_id, reader, _now_ms())
            if not deleted:
                return _not_found(response_id)
            return _json(200, {"id": response_id, "object": "response.deleted", "deleted": True})
        if outbound.method != "GET":
            return _json(405, {"error": {"message": f"/v1{outbound.path} takes GET only.", "type": "invalid_request_error",
                                         "param": None, "code": "method_not_allowed"}})
        stored = await asyncio.to_thread(self.store.stored_response, response_id, reader, _now_ms())
        if stored is None:
            return _not_found(response_id)
        if not listing:
            return _json(200, stored.response)
        return _json(200, _item_page(stored.items, outbound.query))


class Turn:
    """One request's keeping: whose it is, the provider, and the conversation's items up to its input."""

    __slots__ = ("stored_responses", "owner", "provider", "items", "kept")

    def __init__(self, stored_responses: StoredResponses, owner: str, provider: str, items: list[Any]) -> None:
        self.stored_responses, self.owner, self.provider, self.items = stored_responses, owner, provider, items
        self.kept = False

    async def kept_body(self, body: bytes) -> bytes:
        """A non-streamed response, stored before it is sent: as it was, or saying ``"store": false``."""
        response = orjson.loads(body)
        if await self.keep(response) is not False:
            return body
        return orjson.dumps({**response, "store": False})

    async def keep_final(self, events: Any) -> str | None:
        """Store a stream's final response once its last event is made (``events.final``), before that
        event is relayed; what went wrong, for the log record, when it could not be stored."""
        final = getattr(events, "final", None)
        if final is None or self.kept:
            return None
        return "the response could not be stored for previous_response_id" if await self.keep(final) is False else None

    async def keep(self, response: dict[str, Any]) -> bool | None:
        """Store the response; None when there is nothing to keep (a failed one), False when the store failed."""
        self.kept = True
        if response.get("status") not in ("completed", "incomplete") or not isinstance(response.get("id"), str):
            return None
        now = _now_ms()
        stored = StoredResponse(response["id"], self.owner, self.provider, response.get("model"), response, self.items,
                                now, now + self.stored_responses.retention_ms)
        try:
            await asyncio.to_thread(self.stored_responses.store.keep_response, stored)
        except Exception as exc:  # whatever the store or its driver raised (locked, away): the answer still goes
            log.warning("response %s could not be stored (%s): it cannot be continued or retrieved", stored.id, exc)
            return False
        return True


def _owner(principal: "Principal") -> str:
    return principal.key_id or ""  # without keys (require_api_key off) every caller is the same owner


def _reader(principal: "Principal") -> str | None:
    """Whose responses ``principal`` may read: its own, or (an admin key) everyone's."""
    return None if "admin" in principal.scopes else _owner(principal)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _as_items(value: Any) -> list[Any]:
    """A request's ``input`` as the input items OpenAI lists (each with an id, message content as parts)."""
    if isinstance(value, str):
        return [_item({"type": "message", "role": "user", "content": value})]
    if not isinstance(value, list) or not value:
        raise BadRequest("'input' must be a string or a non-empty list of input items.", code="untranslatable_request")
    return [_item(item) if isinstance(item, dict) else item for item in value]


def _item(item: dict[str, Any]) -> dict[str, Any]:
    kind = item.get("type") or ("message" if "role" in item else None)
    item = {**item, "type": kind} if kind else dict(item)
    if kind == "message" and isinstance(item.get("content"), str):
        part = "output_text" if item.get("role") == "assistant" else "input_text"
        item["content"] = [{"type": part, "text": item["content"]}]
    if not item.get("id"):
        item = {"id": new_id(_ITEM_PREFIX.get(kind or "", "item")), **item}
    return item


def _item_page(items: list[Any], query: str) -> dict[str, Any]:
    """OpenAI's list shape over the stored input items: ``order`` (desc by default), ``after`` (an item
    id, exclusive) and ``limit`` (1 to 100, 20 by default)."""
    params = {name: values[-1] for name, values in parse_qs(query).items()}
    order = params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise BadRequest(f"'order' must be 'asc' or 'desc', got {quoted(order)}.", code="invalid_query")
    try:
        limit = int(params.get("limit", PAGE_DEFAULT))
    except ValueError:
        limit = 0
    if not 1 <= limit <= PAGE_MAX:
        raise BadRequest(f"'limit' must be a whole number from 1 to {PAGE_MAX}, got {quoted(params.get('limit', ''))}.",
                         code="invalid_query")
    ordered = items if order == "asc" else items[::-1]
    start = 0
    if "after" in params:
        ids = [item.get("id") if isinstance(item, dict) else None for item in ordered]
        if params["after"] not in ids:
            raise BadRequest(f"'after' names no input item of this response: {quoted(params['after'])}.",
                             code="invalid_query")
        start = ids.index(params["after"]) + 1
    page = ordered[start:start + limit]
    first = page[0].get("id") if page and isinstance(page[0], dict) else None
    last = page[-1].get("id") if page and isinstance(page[-1], dict) else None
    return {"object": "list", "data": page, "first_id": first, "last_id": last, "has_more": start + limit < len(ordered)}


def _not_found(response_id: str) -> Answer:
    """OpenAI's 404 for a response it does not hold (or holds for another key)."""
    return _json(404, {"error": {"message": f"Response with id {quoted(response_id)} not found.",
                                 "type": "invalid_request_error", "param": None, "code": None}})


def _json(status: int, value: Any) -> Answer:
    return Answer(status, "application/json", orjson.dumps(value))
