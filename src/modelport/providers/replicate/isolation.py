"""Tenant isolation on a shared Replicate credential (setting ``replicate_isolate_predictions``).

Many gateway keys may share one stored Replicate account (``@slug``); Replicate itself cannot tell
them apart. So the gateway records which key created each prediction, training and file (in the store,
as the create response passes: a client that polls at once is already recognised, on every worker and
node), and then:

- GET, cancel or delete of an object the caller does not own is answered 404 in Replicate's own shape,
  without asking Replicate: the caller cannot tell another tenant's object from a missing one.
- Lists (predictions, trainings, files) keep only the caller's own objects. Each page is Replicate's
  page filtered, and its ``next``/``previous`` (rewritten to the gateway) carry Replicate's cursors, so
  paging stays on the gateway and walks the account once; a page may be short, or empty with a ``next``.
- A prediction input that names one of the account's file URLs the caller does not own is refused:
  Replicate's workers would otherwise read another tenant's upload.
- The account's webhook signing secret goes to admin keys only (policy.py gives other keys their
  own relay secret).
- A path with a percent-escape is refused: Replicate would decode it into a path the checks above
  never saw (``/%70redictions``).

Admin-scoped keys see everything. Objects created outside the gateway (no recorded owner) are visible
to admin keys only. A caller using its own Replicate key (no ``@slug``) is on its own account: nothing
to isolate. Callers without a gateway key (``require_api_key = false``) share one tenant.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from yarl import URL

from ...errors import BadRequest, BadUpstreamResponse, GatewayError
from ..base import Answer, Exchange
from ..records import PolicyStore
from ..registry import get_provider
from .paths import created_kind, is_plain, listed_collection, object_ref


log = logging.getLogger("modelport.gateway")
ANONYMOUS_TENANT = "anonymous"
# A 404 in Replicate's problem+json shape, the same for another tenant's object as for a missing one.
NOT_FOUND = Answer(404, "application/problem+json", orjson.dumps({"title": "Not found", "detail": "Not found.", "status": 404}))


# Owners this worker remembers. An owner never changes once recorded, so a remembered one is never
# stale; an unknown id is always asked again (its create may have just passed through another worker).
# Measured on the embedded store: one id 16 µs, a page of 100 ids 0.5 ms, a write 0.12 ms.
KNOWN_OWNERS_LIMIT = 65_536


class Isolation:
    """Replicate's isolation rules, one half of its ``ExchangePolicy`` (policy.py)."""

    def __init__(self, store: PolicyStore) -> None:
        self.store = store
        self._known: dict[tuple[str, str], str] = {}
        # Owners waiting for the store, written together (group commit): each create still waits for
        # its own row to be committed, but concurrent creates share one transaction and one thread, so
        # they no longer queue one by one on SQLite's lock behind the log writer (measured at c=32 on
        # Replicate creates: p99 0.45 s with a write each).
        self._pending: list[tuple[tuple[str, str, str, str], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def _owners(self, slug: str, ids: list[str]) -> dict[str, str]:
        """The recorded owners of ``ids`` (those that have one), from memory where it can."""
        remembered = ((i, self._known.get((slug, i))) for i in ids)
        owners = {i: owner for i, owner in remembered if owner is not None}
        missing = [i for i in ids if i not in owners]
        if missing:
            # A thread: on PostgreSQL this is a network round trip (the table is not replicated: one row
            # per object ever created), and a page of 100 ids takes ~0.5 ms even on SQLite.
            found = await asyncio.to_thread(self.store.owners_of, slug, missing)
            if len(self._known) + len(found) > KNOWN_OWNERS_LIMIT:
                self._known.clear()  # simpler than an LRU, and refilled by the next few reads
            self._known.update(((slug, i), owner) for i, owner in found.items())
            owners.update(found)
        return owners

    async def authorize(self, exchange: Exchange) -> Answer | None:
        slug = exchange.target.slug
        if slug is None or exchange.admin:
            return None
        if not is_plain(exchange.path):
            raise BadRequest("this path has a percent-escape; on a shared Replicate account the gateway forwards only "
                             "plain paths for non-admin keys, so that it knows which object a request names (Replicate's "
                             "paths need no escapes)", code="path_not_plain")
        ref = object_ref(exchange.path)
        if ref is not None:
            owner = (await self._owners(slug, [ref.id])).get(ref.id)  # a poll: in memory after the first
            return None if owner == tenant_of(exchange) else NOT_FOUND
        if created_kind(exchange.method, exchange.path) in ("prediction", "training"):
            await self._check_input_files(exchange, slug)
        return None

    def wants_screen(self, exchange: Exchange) -> bool:
        if exchange.target.slug is None or exchange.admin:
            # An admin's create records no owner: what it makes is for admin keys only, exactly as an
            # object made outside the gateway, so the row would change nothing — and it cost a store
            # write per create on the request path (Replicate's bench throughput fell from ~0.7 to ~0.3).
            return False
        if created_kind(exchange.method, exchange.path) is not None:
            return True
        return listed_collection(exchange.method, exchange.path) is not None

    async def screen(self, exchange: Exchange, status: int, body: bytes) -> bytes:
        if not 200 <= status < 300:
            return body
        slug = exchange.target.slug
        assert slug is not None  # wants_screen said so
        kind = created_kind(exchange.method, exchange.path)
        if kind is not None:
            created = json_or_none(body)
            if isinstance(created, dict) and isinstance(created.get("id"), str):
                await self._record_owner(slug, created["id"], kind, tenant_of(exchange))
            return body
        return await self._own_page(exchange, slug, body)

    async def _record_owner(self, slug: str, object_id: str, kind: str, tenant: str) -> None:
        recorded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(((slug, object_id, kind, tenant), recorded))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_owners())
        try:
            await recorded
        except Exception:  # whatever the store raises: the caller must hear of it, without a traceback
            log.exception("could not record the owner of Replicate %s %s on @%s", kind, object_id, slug)
            raise GatewayError(f"Replicate created {kind} {object_id}, but the gateway could not record that this key "
                               "owns it (the store did not answer), so this key cannot see it; an admin key can "
                               "cancel or delete it") from None

    async def _write_owners(self) -> None:
        """Write what is pending, in one transaction, until nothing is (creates that arrive meanwhile
        go into the next one)."""
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                # A thread: SQLite's write may wait on its lock (busy_timeout), the event loop must not.
                await asyncio.to_thread(self.store.record_owners, [owner for owner, _ in batch])
            except Exception as exc:
                log.exception("could not record the owners of %d Replicate objects", len(batch))
                for _, recorded in batch:
                    if not recorded.done():
                        recorded.set_exception(exc)
                continue
            for owner, recorded in batch:
                self._known[owner[:2]] = owner[3]  # this worker knows them at once
                if not recorded.done():
                    recorded.set_result(None)

    async def _own_page(self, exchange: Exchange, slug: str, body: bytes) -> bytes:
        page = json_or_none(body)
        results = page.get("results") if isinstance(page, dict) else None
        if not isinstance(results, list):
            # Withheld rather than relayed unfiltered: it could list other tenants' objects.
            raise BadUpstreamResponse("Replicate answered a list the gateway could not read, so it was withheld "
                                      "(prediction isolation filters every list); try again")
        ids = [item["id"] for item in results if isinstance(item, dict) and isinstance(item.get("id"), str)]
        owners = await self._owners(slug, ids)
        tenant = tenant_of(exchange)
        page["results"] = [item for item in results if isinstance(item, dict) and owners.get(item.get("id")) == tenant]
        return orjson.dumps(page)

    async def _check_input_files(self, exchange: Exchange, slug: str) -> None:
        if exchange.body is None:
            raise BadRequest("this create's body is too large for the gateway to check its input for other keys' "
                             "file URLs (over 4 MiB); upload large inputs with POST /v1/files and pass the file's URL",
                             code="body_too_large_to_check")
        request = exchange.body_json.or_none()
        if not isinstance(request, dict):
            return  # Replicate refuses it with its own 4xx
        hosts = _account_hosts(exchange.target.base_url)
        named = {file_id: text for text in _strings(request.get("input")) if (file_id := _file_id(text, hosts))}
        owners = await self._owners(slug, list(named)) if named else {}
        tenant = tenant_of(exchange)
        for file_id, url in named.items():
            if owners.get(file_id) != tenant:
                raise BadRequest(f"the input names the file {url}, which this gateway key did not upload; "
                                 "upload it with this key (POST /v1/files) and use that URL",
                                 code="file_not_owned")


def tenant_of(exchange: Exchange) -> str:
    """Whose objects these are: the gateway key, or the one tenant of callers without a key."""
    return exchange.key_id or ANONYMOUS_TENANT


def json_or_none(body: bytes | None) -> Any:
    """A JSON body decoded, or None (no body, or not JSON: the provider answers that with its own 4xx)."""
    if body is None:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _account_hosts(base_url: str) -> tuple[URL, ...]:
    """Where the account's file URLs live: the provider's host as configured, and Replicate's own API
    (the URL replicate-python puts into inputs, research/replicate.md §2.9)."""
    return URL(base_url), URL(get_provider("replicate").base_url)  # type: ignore[union-attr]


def _file_id(text: str, hosts: tuple[URL, ...]) -> str | None:
    """The file id in ``text`` when it is a file URL on one of ``hosts`` (read as a server reads it:
    host case, dot segments and percent-escapes resolved by yarl), else None."""
    if "://" not in text:
        return None  # most input strings: no parse
    try:
        url = URL(text)
    except (ValueError, TypeError):
        return None
    if not url.absolute or not url.host:
        return None
    host = url.host.rstrip(".")
    if not any(host == base.host and (base.explicit_port is None or url.port == base.port) for base in hosts):
        return None
    segments = [segment for segment in url.path.split("/") if segment]
    lowered = [segment.lower() for segment in segments]
    if "files" not in lowered[:-1]:
        return None
    return segments[lowered.index("files") + 1]


def _strings(value: Any):
    """Every string inside a JSON value, at any depth."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
