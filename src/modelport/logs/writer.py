"""The log writer: enrich, price and insert log records in batches. Nothing is lost.

    submit(record) ─▶ bounded deque ─(≤100 records or 20 ms)─▶ enricher thread: enrich, price
         │ full                                         ─▶ writer thread: one transaction ─▶ logs, predictions
         ▼                                                              │ store locked / failing
    spill/<pid>.jsonl ◀─────────────────────────────────────────────────┘
         └─▶ replayed when the store answers again, by this process or, after a crash, the next one

It runs in the log service process (``logs/service.py``) under ``modelport serve``, fed by every
worker; only an app built by ``create_app()`` for another ASGI server runs it in-process as its
``Recorder``. Every second it also adopts the spill files whose owner let go of them (a dead process,
or a worker that spilled while the log service was away) and replays them.

``submit`` is an append to a deque (O(1), no allocation beyond the deque's). Enrichment (JSON parsing
of bodies, usage, redaction) and the log store run off the event loop, each on its own pair of threads
(``_Lanes``): in the log service, a background lane at the lowest CPU priority while the writer keeps
up, and a catch-up lane at normal priority while it is behind. The store's lanes take turns, so its
transactions never race; a batch is enriched while the one before it is written, so the store's round
trips and its server's work overlap the next batch's Python. ``stop()`` drains the queue fully before the process exits (SIGTERM).
``queued_total``/``settled_total`` count queued records and those of them now in the store or the
spill file (the queue is FIFO), so the log service can acknowledge what it holds safely.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..settings import Settings
from ..store import LogStore, ResolvedProvider, Store, StoreError, StoreUnavailable, open_log_store
from ..store.counters import open_counters
from ..store.leases import Lease, open_lease
from ..store.log_base import UPKEEP_INTERVAL_SECONDS
from ..hosts import HostRules
from ..providers.base import ProviderApi, ProviderJobs, ProviderSpec, Spend, Target
from ..providers.registry import get_provider, make_jobs, with_jobs
from ..usage import PriceBook
from ..usage.limits import Charge, key_budget, provider_budget, spent
from .autopoll import AutoPoller, OpenJob
from .enrich import Enricher, Prepared, Redactor, degraded_row, fallback_row, metrics_row
from .metrics import Metrics
from ..log_record import LogRecord
from .record import degraded
from .spill import SpillFile, read_lines, record_to_line
from ..transport.send import UpstreamClient
from ..transport.sessions import Upstreams

log = logging.getLogger("modelport.logs")

# Short transactions: each commit is a burst of CPU and WAL writes in the log service, and bursts of
# 500 rows every 200 ms showed in the workers' tail latency (p99 at c=1 2.3 ms; 1.7-2.0 ms at 100 rows
# or 20 ms, with the same throughput at c=32).
BATCH_SIZE = 100
# Behind by this many records, the writer moves to the catch-up lane (normal CPU priority) and takes
# bigger batches, whose commits cost less a row, until the queue is down to one batch again. At the
# lowest priority alone, two saturated workers on 2 cores left the log service ~5 % of a core: it
# spilled gigabytes in minutes and the workers held 64 MB of unacknowledged frames each.
CATCH_UP_RECORDS = 1_000
CATCH_UP_BATCH_SIZE = 500
# Enrichment is pure Python: between slices of this many records the thread yields the GIL, so the
# event loop never waits behind a whole batch (p99 at c=1 was 15 ms with logging on, 3 ms without).
YIELD_EVERY = 16
FLUSH_SECONDS = 0.02
# After a failed write, new batches go straight to the spill file for this long, so a locked store
# costs one busy-timeout wait per second rather than one per batch.
RETRY_SECONDS = 1.0
WRITE_BUSY_TIMEOUT = 1.0
ADOPT_SECONDS = 1.0
LOOKUP_SECONDS = 15.0
SECRET_CACHE_SECONDS = 60.0
AUTOPOLL_MAX_AGE_MS = 24 * 3600 * 1000
AUTOPOLL_BATCH = 100


class LogWriter:
    """``store`` is the gateway's ``Store`` (stored provider secrets, for redaction and for the lookups
    of providers' job hooks); ``upstreams`` the pooled sessions their calls go out on (None: no calls,
    so no autopoll and no lookups, as in a tool that only writes records). The writer opens its own
    ``LogStore`` from ``settings``, with a short busy wait (``WRITE_BUSY_TIMEOUT``). Providers that run jobs (``ProviderJobs``: Replicate's predictions) are
    reached only through their hook, found in the registry."""

    def __init__(self, settings: Settings, store: Store, upstreams: Upstreams | None,
                 background_niceness: int = 0) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self._store = store
        self._calls = _ProviderCalls(settings, upstreams) if upstreams is not None else None
        self._queue: deque[LogRecord] = deque()
        self._capacity = max(1, settings.log_queue_size)
        self._wake = asyncio.Event()
        self._spill: SpillFile | None = None
        self._lanes = _Lanes(background_niceness, "writer")  # the log store's work, one call at a time
        self._enriching = _Lanes(background_niceness, "enricher")  # enrichment, beside the store's work
        self._writing: asyncio.Future[None] | None = None  # the batch being written
        self._behind = False
        self._log_store: LogStore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._pollers: list[asyncio.Task[None]] = []
        self._autopoll_leases: dict[str, Lease] = {}
        self._stopping = False
        self._down_until = 0.0
        self._next_response_upkeep = 0.0  # monotonic time: the first batch runs it
        self._adopt_at = 0.0
        self.queued_total = 0
        self.settled_total = 0
        self.on_settled: Callable[[], None] | None = None
        self._providers: dict[str, tuple[ResolvedProvider | None, float]] = {}
        # Called on the writer's lane with each record once enriched (``None`` with logging off, when
        # nothing is): the OpenTelemetry exporter's feed (logs/otel.py). It must not block.
        self.on_prepared: Callable[[LogRecord, Prepared | None], None] | None = None
        self._counters = open_counters(settings)  # budgets settle here, to the real usage
        self._jobs: dict[str, ProviderJobs] = {}
        for spec in with_jobs():
            jobs = make_jobs(spec, settings)
            if jobs is not None:
                self._jobs[spec.id] = jobs
        self._enricher = Enricher(
            PriceBook.load(settings.pricing_file),
            Redactor(settings.log_redact_paths),
            log_bodies=settings.log_bodies,
            body_cap=settings.log_body_max_bytes,
            secrets_for=self._secret_of,
            jobs=self._jobs,
        )
        self.metrics.gauge("modelport_log_queue_depth", lambda: len(self._queue))
        self.metrics.gauge("modelport_log_spill_pending", lambda: float(self.spill_pending))

    @property
    def spill_pending(self) -> bool:
        return self._spill is not None and (self._spill.pending or bool(self._spill.backlog))

    # -- the request path -------------------------------------------------------------------------
    def submit(self, record: LogRecord) -> None:
        queue = self._queue
        if len(queue) < self._capacity or self._spill is None:
            queue.append(record)
            self.queued_total += 1
            if len(queue) == BATCH_SIZE:
                self._wake.set()
            return
        self._overflow(record)

    def _overflow(self, record: LogRecord) -> None:
        try:
            self._spill.append([record_to_line(record)], durable=False)  # type: ignore[union-attr]
            self.metrics.add("modelport_log_spilled_records_total")
        except Exception:  # never raise into the request path; keep it in memory instead
            log.exception("log spill failed; keeping the record in memory")
            self._queue.append(record)
            self.queued_total += 1

    # -- lifecycle --------------------------------------------------------------------------------
    async def render_metrics(self) -> str:
        return self.metrics.render()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._spill = SpillFile(self.settings.data_dir / "spill")
        await self._lanes.run(self._open)
        self._task = asyncio.create_task(self._run(), name="modelport-log-writer")
        for provider, jobs in self._jobs.items() if self.settings.logging and self._calls is not None else ():
            if jobs.poll_interval is None:
                continue
            self._autopoll_leases[provider] = open_lease(self.settings, f"{provider}-autopoll")  # one node polls, not each
            poller = AutoPoller(functools.partial(self._find_open, provider), self.submit, jobs.poll_interval)
            self._pollers.append(asyncio.create_task(poller.run(), name=f"modelport-autopoll-{provider}"))

    async def stop(self) -> None:
        """Drain everything queued, and the spill files workers let go of on their way out, into the
        store (or, if it is down, the spill file), then close."""
        for poller in self._pollers:
            poller.cancel()
        await asyncio.gather(*self._pollers, return_exceptions=True)
        self._stopping = True
        self._adopt_at = 0.0
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self._lanes.run(self._close)
        self._lanes.shutdown()
        self._enriching.shutdown()

    def _open(self) -> None:
        self._log_store = open_log_store(self.settings, busy_timeout=WRITE_BUSY_TIMEOUT)
        self._adopt()

    def _adopt(self) -> None:
        assert self._spill is not None
        self._spill.adopt_orphans()
        self._adopt_at = time.monotonic() + ADOPT_SECONDS

    def _close(self) -> None:
        late = list(self._queue)  # submitted after the drain finished: keep them on disk
        self._queue.clear()
        if late:
            self._spill_batch(late)
        if self._spill is not None:
            self._spill.close()
        if self._log_store is not None:
            self._log_store.close()
        for lease in self._autopoll_leases.values():
            lease.close()

    # -- the writer loop --------------------------------------------------------------------------
    async def _run(self) -> None:
        lanes = self._lanes
        while True:
            # Wait for a full batch or the flush interval, even while records trickle in: a thread hop
            # per handful of records was ~25 % of the request path's CPU when this ran in the workers.
            if len(self._queue) < BATCH_SIZE and not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
                except TimeoutError:
                    pass
                self._wake.clear()
            behind = self._is_behind()
            size = CATCH_UP_BATCH_SIZE if behind else BATCH_SIZE
            batch = [self._queue.popleft() for _ in range(min(size, len(self._queue)))]
            try:
                if batch:
                    # Enriched while the previous batch is still being written: the store's round trips
                    # and the server's work overlap this process's Python (bench/README.md, "PostgreSQL
                    # log ingest"). Batches are still written, and settled, one after another, in order.
                    prepared = await self._enriching.run(self._prepare_batch, batch, urgent=behind)
                    await self._written()
                    self._writing = asyncio.ensure_future(self._store_batch(batch, prepared, behind))
                    batch = []
                if time.monotonic() >= self._adopt_at:
                    await self._written()
                    await lanes.run(self._adopt)
                if self.spill_pending and time.monotonic() >= self._down_until and self.settings.logging:
                    await self._written()
                    await lanes.run(self._replay, urgent=True)  # replaying is catching up
                if self._stopping and not self._queue:
                    await self._written()
            except Exception as exc:  # neither the store nor the disk took the batch: keep it and retry
                if isinstance(exc, _Unwritten):  # the batch before this one: it goes back first
                    batch = exc.batch + batch
                if self._stopping:  # the process is going: say what is lost rather than hang the shutdown
                    log.exception("log writer could neither write nor spill %d records", len(batch) + len(self._queue))
                    self._queue.clear()
                    return
                log.exception("log writer could not write or spill %d records; retrying", len(batch))
                self._queue.extendleft(reversed(batch))
                await asyncio.sleep(RETRY_SECONDS)
            if self._stopping and not self._queue and self._writing is None:
                return

    async def _written(self) -> None:
        """Wait for the batch being written; ``_Unwritten`` if neither the store nor the disk took it."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    async def _store_batch(self, batch: list[LogRecord], prepared: list[Prepared] | None, behind: bool) -> None:
        try:
            if prepared is not None:
                await self._lanes.run(self._store_or_spill, batch, prepared, urgent=behind)
        except Exception as exc:
            raise _Unwritten(batch) from exc
        self._settle(len(batch))

    def _is_behind(self) -> bool:
        """Behind from CATCH_UP_RECORDS queued until the queue is down to one batch (hysteresis, so the
        lane does not flap)."""
        queued = len(self._queue)
        if queued >= CATCH_UP_RECORDS and not self._behind:
            self._behind = True
            self.metrics.add("modelport_log_catch_ups_total")
        elif queued <= BATCH_SIZE:
            self._behind = False
        return self._behind or self._stopping

    def _settle(self, count: int) -> None:
        self.settled_total += count
        if self.on_settled is not None:
            self.on_settled()

    def _prepare_batch(self, batch: list[LogRecord]) -> list[Prepared] | None:
        """The batch enriched, each record handed to ``on_prepared``; ``None`` with logging off (then
        only metrics and budgets take the records, here)."""
        self._forget_expired_responses()
        traced = self.on_prepared
        if not self.settings.logging:
            settlements = []
            for record in batch:
                self.metrics.observe(metrics_row(record))
                if record.reservations:  # nothing is stored, but a budget still needs the real usage
                    settlements += self._settlements_of(record)
                if traced is not None:
                    traced(record, None)
            self._settle_budgets(settlements)
            return None
        prepared = []
        for position, record in enumerate(batch, 1):
            prepared.append(self._prepare(record))
            if traced is not None:
                traced(record, prepared[-1])
            if position % YIELD_EVERY == 0:
                time.sleep(0)  # hand the GIL back to the event loop: requests wait on it otherwise
        return prepared

    def _forget_expired_responses(self) -> None:
        """Hourly, with logging on or off: delete the stored Responses past ``responses_retention_days``
        (store/responses.py; reads already ignore them). Every node's writer may run it: it is one DELETE."""
        if time.monotonic() < self._next_response_upkeep:
            return
        self._next_response_upkeep = time.monotonic() + UPKEEP_INTERVAL_SECONDS
        try:
            self._store.forget_expired_responses(time.time_ns() // 1_000_000)
        except StoreError as exc:
            log.warning("expired stored responses could not be deleted (%s); retried in an hour", exc)

    def _store_or_spill(self, batch: list[LogRecord], prepared: list[Prepared]) -> None:
        if time.monotonic() < self._down_until:
            self._spill_batch(batch)
            return
        try:
            self._write(prepared)
        except StoreUnavailable as exc:
            log.warning("log store unavailable (%s); spilling %d records to disk", exc, len(batch))
            self.metrics.add("modelport_log_write_failures_total")
            self._down_until = time.monotonic() + RETRY_SECONDS
            self._spill_batch(batch)

    def _settlements_of(self, record: LogRecord) -> list[tuple[Charge, int, bool]]:
        """With logging off: a record's settlements alone. One that cannot be priced keeps its reservation,
        as an enrichment that fails does (a budget errs on the side of refusing)."""
        try:
            return self._enricher.settlements(record)
        except Exception:
            log.exception("budget settlement failed for %s: its reservation is kept", record.id)
            return []

    def _prepare(self, record: LogRecord) -> Prepared:
        try:
            return self._enricher.prepare(record)
        except Exception as exc:  # keep the record; only its enrichment is lost
            log.exception("log enrichment failed for %s", record.id)
            problem = f"{type(exc).__name__}: {exc}"
        try:
            return Prepared(fallback_row(record, problem))
        except Exception as exc:  # the record itself cannot be encoded: store what can be
            problem = f"the record could not be encoded ({exc})"
            self._count_degraded(record.id, problem)
            return Prepared(fallback_row(degraded(record, problem), problem))

    def _write(self, prepared: list[Prepared]) -> None:
        """Write a batch; a row the store refuses is stored degraded, the rest as they are. Raises
        ``StoreUnavailable`` when the store itself fails (locked, slow, out of space)."""
        try:
            self._write_transaction(prepared)
        except StoreUnavailable:
            raise
        except (StoreError, ValueError, TypeError, OverflowError) as exc:  # RecordRefused: a value it cannot hold
            if len(prepared) > 1:  # find the row: once retried forever, it stopped every record behind it
                for item in prepared:
                    self._write([item])
                return
            (item,) = prepared
            problem = f"the store refused the record ({exc})"
            if item.degraded:
                self.metrics.add("modelport_log_dropped_records_total")
                log.error("log record %s cannot be stored even without its metadata, headers and bodies (%s); "
                          "dropped", item.row["id"], problem)
                return
            self._count_degraded(item.row["id"], problem)
            self._write([Prepared(degraded_row(item.row, problem), settlements=item.settlements, degraded=True)])

    def _count_degraded(self, record_id: str, problem: str) -> None:
        self.metrics.add("modelport_log_degraded_records_total")
        log.error("log record %s is stored without its metadata, headers and bodies: %s", record_id, problem)

    def _write_transaction(self, prepared: list[Prepared]) -> None:
        """One transaction: skip ids already stored (replays), price predictions, insert rows."""
        log_store = self._log_store
        assert log_store is not None
        self._look_up(log_store, prepared)
        with log_store.batch() as batch:
            seen = batch.stored_ids([item.row["id"] for item in prepared])
            settle_ids = {item.row["id"] for item in prepared if item.settlements and item.row["id"] not in seen}
            fresh, spends = [], []
            for item in prepared:
                if item.row["id"] in seen:
                    continue
                seen.add(item.row["id"])
                jobs = self._jobs.get(item.row["provider"]) if item.sightings else None
                for sighting in item.sightings if jobs is not None else ():
                    spend = jobs.settle(batch, sighting, item.row)
                    if spend is not None:
                        spends.append(spend)
                fresh.append(item.row)
            batch.append_logs(fresh)
        # After the commit, once (a replayed record was settled by its first write), the batch's together.
        self._settle_budgets([settlement for item in prepared if item.row["id"] in settle_ids
                              for settlement in item.settlements])
        for spend in spends:
            self._charge_creator(spend)
        # Counted once written (a replayed record is counted by the process that writes it).
        self.metrics.add("modelport_log_written_records_total", amount=len(fresh))
        self.metrics.observe_all(fresh)

    def _settle_budgets(self, settlements: list[tuple[Charge, int, bool]]) -> None:
        if not settlements:
            return
        self._counters.settle_all([(charge, delta) for charge, delta, _ in settlements], time.time())
        unpriced = sum(1 for *_, unknown in settlements if unknown)
        if unpriced:  # admitted unreserved (MODELPORT_BUDGET_ADMIT_UNPRICED) and still of unknown cost
            self.metrics.add("modelport_budget_unpriced_requests_total", amount=unpriced)

    def _charge_creator(self, spend: Spend) -> None:
        """An ended prediction's cost, on the budgets of the key and provider that created it (it reserved
        nothing: its cost could not be known at admission)."""
        key = self._store.get_api_key(spend.key_id) if spend.key_id else None
        provider = self._store.get_provider(spend.slug) if spend.slug else None
        budgets = [
            key_budget(key.id, key.name, key.usage_limits, key.usage_anchor) if key is not None else None,
            provider_budget(provider.slug, provider.usage_limits, provider.usage_anchor) if provider is not None else None,
        ]  # fmt: skip
        now = time.time()
        for budget in budgets:
            if budget is not None:
                self._counters.settle(budget.charge(now, 0), spent(budget.kind, spend.cost_usd, spend.tokens), now)

    def _spill_batch(self, batch: list[LogRecord]) -> None:
        assert self._spill is not None
        self._spill.append([record_to_line(record) for record in batch], durable=True)
        self.metrics.add("modelport_log_spilled_records_total", amount=len(batch))

    def _replay(self) -> None:
        """Write the spilled records (this process's and adopted ones); stop at the first failure."""
        spill = self._spill
        assert spill is not None
        spill.take()
        for path in list(spill.backlog):
            try:
                for chunk in read_lines(path, CATCH_UP_BATCH_SIZE):
                    self._write([self._prepare(record) for record in chunk])
                    self.metrics.add("modelport_log_replayed_records_total", amount=len(chunk))
            except StoreUnavailable as exc:
                log.warning("log store still unavailable (%s); the spill file is kept", exc)
                self._down_until = time.monotonic() + RETRY_SECONDS
                return
            except FileNotFoundError:
                pass  # claimed and replayed by another worker
            spill.done(path)

    # -- providers' jobs: lookups before pricing, and autopoll ----------------------------------
    def _look_up(self, log_store: LogStore, prepared: list[Prepared]) -> None:
        """Fetch, before the transaction, what providers' hooks need to price the jobs that end here
        (Replicate: a deployment's hardware)."""
        if self._loop is None:
            return
        for provider, jobs in self._jobs.items():
            pairs = [(sighting, item.row["slug"]) for item in prepared if item.row["provider"] == provider
                     for sighting in item.sightings]
            for what, slug in jobs.lookups(log_store, pairs) if pairs else ():
                upstream = self._upstream_of(slug, provider)
                if upstream is None:
                    continue
                future = asyncio.run_coroutine_threadsafe(jobs.look_up(what, upstream), self._loop)
                try:
                    future.result(timeout=LOOKUP_SECONDS)
                except (TimeoutError, asyncio.CancelledError) as exc:  # the job is priced without it
                    log.warning("%s %s: lookup failed: %s", provider, what, exc)

    def _upstream_of(self, slug: str, provider_id: str) -> ProviderApi | None:
        """The provider's API with the stored provider's own credential, when ``@slug`` is of that provider:
        its requests go through the provider's auth hook, whatever kind (a key, a signature, a token)."""
        provider = self._store.resolve_provider(slug)
        spec = get_provider(provider_id)
        if provider is None or spec is None or provider.provider != provider_id or not provider.secret:
            return None
        return self._calls.to(spec, provider) if self._calls is not None else None

    def _secret_of(self, slug: str) -> str | None:
        provider = self.provider_of(slug)
        return provider.secret if provider is not None else None

    def provider_of(self, slug: str) -> ResolvedProvider | None:
        """The stored provider ``@slug``, cached for a minute (for redaction and span hosts; on the writer's lanes)."""
        known = self._providers.get(slug)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        try:
            provider = self._store.resolve_provider(slug)
        except Exception:  # the keys store busy or away (its driver's own error), or a secret the vault cannot open
            provider = None  # nothing to scrub beyond the header and path redaction
        self._providers[slug] = (provider, time.monotonic() + SECRET_CACHE_SECONDS)
        return provider

    async def _find_open(self, provider_id: str) -> list[OpenJob]:
        jobs = self._jobs[provider_id]

        def find() -> list[OpenJob]:
            assert self._log_store is not None
            if not self._autopoll_leases[provider_id].held():
                return []  # another node holds it and polls for the whole gateway
            since = time.time_ns() // 1_000_000 - AUTOPOLL_MAX_AGE_MS
            found = []
            for job_id, slug, key_id in self._log_store.open_predictions(since, AUTOPOLL_BATCH, provider=provider_id):
                upstream = self._upstream_of(slug, provider_id)
                if upstream is not None:
                    found.append(OpenJob(job_id, provider_id, slug, key_id, jobs.poll_path(job_id), upstream))
            return found

        return await self._lanes.run(find)


class _ProviderCalls:
    """The log service's transports to providers' APIs, built once: the trusted and the SSRF-guarded side
    (a stored provider's ``custom_host`` goes guarded unless the operator trusts it, as on the request
    path: gateway/resolve.py), and each provider's auth hook's own calls (guarded)."""

    def __init__(self, settings: Settings, upstreams: Upstreams) -> None:
        self._settings, self._upstreams = settings, upstreams
        self._host_rules = HostRules.from_settings(settings)
        self._sides = {guarded: self._client("the log service", guarded) for guarded in (False, True)}
        self._auth: dict[str, UpstreamClient] = {}

    def to(self, spec: ProviderSpec, provider: ResolvedProvider) -> ProviderApi:
        guarded = bool(provider.custom_host) and not self._host_rules.trusts(provider.custom_host)
        target = Target(provider=spec.id, base_url=(provider.custom_host or spec.base_url).rstrip("/"),
                        api_key=provider.secret, settings=dict(provider.settings or {}), slug=provider.slug)
        auth = self._auth.get(spec.id)
        if auth is None:
            auth = self._auth[spec.id] = self._client(f"{spec.id}'s auth", True)
        return ProviderApi(spec, target, self._sides[guarded], auth)

    def _client(self, purpose: str, guarded: bool) -> UpstreamClient:
        return UpstreamClient(self._upstreams, purpose, self._settings.upstream_timeout, guarded=guarded,
                              allow_private=self._settings.allow_private_hosts)


class _Unwritten(Exception):
    """A batch neither the store nor the spill file took (the cause is chained)."""

    def __init__(self, batch: list[LogRecord]) -> None:
        super().__init__(f"{len(batch)} log records were neither written nor spilled")
        self.batch = batch


class _Lanes:
    """Two single-thread executors that take turns (never both at once: the store's lanes so the
    writer's transactions never wait on each other): the background lane, at ``background_niceness``,
    and the catch-up lane, at the process's own priority. Two threads rather than one whose priority
    changes: a thread may lower its own CPU priority, but raising it back takes privileges a gateway
    should not need (CAP_SYS_NICE)."""

    def __init__(self, background_niceness: int, name: str) -> None:
        self._background = ThreadPoolExecutor(1, thread_name_prefix=f"modelport-log-{name}",
                                              initializer=_lower_priority, initargs=(background_niceness,))
        self._catch_up = ThreadPoolExecutor(1, thread_name_prefix=f"modelport-log-{name}-catch-up")
        self._turn = asyncio.Lock()

    async def run(self, work: Callable[..., Any], *args: Any, urgent: bool = False) -> Any:
        async with self._turn:
            lane = self._catch_up if urgent else self._background
            return await asyncio.get_running_loop().run_in_executor(lane, work, *args)

    def shutdown(self) -> None:
        self._background.shutdown(wait=True)
        self._catch_up.shutdown(wait=True)


def _lower_priority(niceness: int) -> None:
    if niceness > 0:  # Linux nice values are per thread: this thread only
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(os.PRIO_PROCESS, 0) + niceness))
