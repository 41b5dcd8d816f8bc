"""The ``ResponseStore`` protocol: OpenAI Responses the gateway answered for a translated provider, kept
so that ``previous_response_id`` can continue them and ``GET``/``DELETE /v1/responses/{id}`` can reach
them (gateway/stored_responses.py). Both SQL stores implement it with the statements below
(``ResponsesSQL``, mixed into ``store_sql.StoreSQL``), on the table of migration 10 (SQLite) and 3
(PostgreSQL).

One row holds a whole conversation up to its response: ``items`` are the response's input items with
those of every earlier turn before them (never an earlier turn's ``instructions``, which OpenAI does not
carry over), and ``response`` is the response object, whose ``output`` the next turn appends. So a
continuation is one lookup by id, never a walk up the chain. ``owner`` is the gateway key that created
it ("" without one); a read names the owner it is for, or ``None`` for an admin, who reads every
owner's. A row past ``expires_at`` is not found, whether or not upkeep has deleted it yet.

Writes signal no change (like owners of Replicate objects): no hot-path cache holds these rows. JSON is
kept as text, as written, so a retrieved response has its keys in the order it was sent in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    owner: str
    provider: str
    model: str | None
    response: dict[str, Any]
    items: list[dict[str, Any]]
    created_at: int  # epoch ms
    expires_at: int  # epoch ms


class ResponseStore(Protocol):
    def keep_response(self, stored: StoredResponse) -> None:
        """Store ``stored`` (an id already kept is left as it is)."""

    def stored_response(self, response_id: str, owner: str | None, now_ms: int) -> StoredResponse | None:
        """The response with that id, unexpired at ``now_ms`` and ``owner``'s (any owner's for ``None``)."""

    def delete_stored_response(self, response_id: str, owner: str | None, now_ms: int) -> bool:
        """Delete it (same rules as ``stored_response``); whether there was one to delete."""

    def forget_expired_responses(self, now_ms: int) -> int:
        """Delete the rows expired at ``now_ms`` (the log writer's hourly upkeep); how many went."""


class ResponsesSQL:
    """``ResponseStore`` in the SQL both stores share: a base of ``store_sql.StoreSQL``, whose ``_sql``,
    ``_transaction`` and ``_reading`` give each store's dialect."""

    _sql: Any
    _transaction: Any
    _reading: Any

    def keep_response(self, stored: StoredResponse) -> None:
        with self._transaction(changes_state=False) as db:
            db.execute(
                self._sql("INSERT INTO stored_responses (id, owner, provider, model, response, items, created_at,"
                          " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"),
                (stored.id, stored.owner, stored.provider, stored.model, orjson.dumps(stored.response).decode(),
                 orjson.dumps(stored.items).decode(), stored.created_at, stored.expires_at),
            )

    def stored_response(self, response_id: str, owner: str | None, now_ms: int) -> StoredResponse | None:
        where, params = _visible(response_id, owner, now_ms)
        with self._reading() as db:
            row = db.execute(self._sql(f"SELECT * FROM stored_responses WHERE {where}"), params).fetchone()
        if row is None:
            return None
        return StoredResponse(row["id"], row["owner"], row["provider"], row["model"], orjson.loads(row["response"]),
                              orjson.loads(row["items"]), row["created_at"], row["expires_at"])

    def delete_stored_response(self, response_id: str, owner: str | None, now_ms: int) -> bool:
        where, params = _visible(response_id, owner, now_ms)
        with self._transaction(changes_state=False) as db:
            return db.execute(self._sql(f"DELETE FROM stored_responses WHERE {where}"), params).rowcount == 1

    def forget_expired_responses(self, now_ms: int) -> int:
        with self._transaction(changes_state=False) as db:
            return db.execute(self._sql("DELETE FROM stored_responses WHERE expires_at <= ?"), (now_ms,)).rowcount


def _visible(response_id: str, owner: str | None, now_ms: int) -> tuple[str, tuple[Any, ...]]:
    if owner is None:
        return "id = ? AND expires_at > ?", (response_id, now_ms)
    return "id = ? AND owner = ? AND expires_at > ?", (response_id, owner, now_ms)
