"""The durable consumer of the file-event stream: every change, from monitors and from
``POST /files/events``, is stored here.

Driven by ``shared.puller`` (JetStream's pull protocol on an inbox of its own, without nats-py's
per-message ``next_msg``), not a FastStream subscriber: FastStream's per-message pipeline cost about
four times a raw fetch of batches (STACK-NOTES: ~11,000 vs ~43,000 msg/s), and this is the platform's
highest-volume path. FastStream still publishes the service's events; the
AsyncAPI document comes from ``contracts/catalog.py``. The consumer has a NATS connection of its own:
its traffic does not queue behind requests, and stopping it never waits on the broker's drain.

The loop fetches a batch, dead-letters what can never be stored (no workspace in the subject, a body
that is not a ``FileChange``) and terms it, writes the rest in one transaction (several when it would
pass ``ingest_transaction_bytes``), acknowledges only after the commit, then publishes the batch's
``file.changed`` events. The next fetch runs while a batch commits. A batch that fails is retried
message by message, so one message that breaks a transaction fails alone; a message still failing on
its ``max_deliver``-th delivery is dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError
from pydantic import ValidationError

from contracts import file_event as api
from contracts import subjects
from services.file_event import recording, trees
from services.file_event import repository as repo
from services.file_event.context import FilesContext
from shared import bus
from shared.puller import Puller
from shared.store import StoreUnavailable

log = logging.getLogger(__name__)

DURABLE = "file_event-ingest"
# Per stored event beyond its JSON: four keys, the marker, the history entry, its share of metadata.
_WRITE_OVERHEAD_BYTES = 400


_TREE_RETRY_MAX_SECONDS = 60.0


@dataclass
class _TreeFailure:
    attempts: int
    retry_at: float  # monotonic


@dataclass
class Incoming:
    msg: Msg
    owner: recording.Owner
    change: api.FileChange


def consumer_config(ctx: FilesContext) -> ConsumerConfig:
    settings = ctx.settings
    return ConsumerConfig(
        # Named as well as durable: the create subject then names the filter, which the bus
        # permissions pin (shared/buspolicy.py).
        name=DURABLE,
        durable_name=DURABLE,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ingest_ack_wait_seconds,
        max_deliver=settings.ingest_max_deliver,
        max_ack_pending=settings.ingest_max_ack_pending,
        filter_subject=subjects.FILE_EVENTS_SUBJECTS[0],
    )


async def subscribe(ctx: FilesContext, nc: Client) -> Puller:
    """Create the durable consumer if missing (an existing one keeps what an operator set) and pull from it."""
    try:
        await nc.jetstream().add_consumer(subjects.FILE_EVENTS_STREAM, consumer_config(ctx))
    except BadRequestError as error:
        log.warning("consumer %s exists with another configuration (%s); using it as it is", DURABLE, error)
    puller = Puller(nc, subjects.FILE_EVENTS_STREAM, DURABLE)
    await puller.start()
    return puller


def chunks(items: list[Incoming], max_bytes: int) -> list[list[Incoming]]:
    """Consecutive runs of the batch whose writes stay under ``max_bytes`` (each at least one message)."""
    runs: list[list[Incoming]] = [[]]
    size = 0
    for item in items:
        cost = 2 * len(item.msg.data) + _WRITE_OVERHEAD_BYTES
        if runs[-1] and size + cost > max_bytes:
            runs.append([])
            size = 0
        runs[-1].append(item)
        size += cost
    return [run for run in runs if run]


class Ingestor:
    def __init__(self, ctx: FilesContext) -> None:
        self.ctx = ctx
        self._owners: dict[str, recording.Owner] = {}
        self._js: JetStreamContext | None = None
        self._carrying = asyncio.Lock()
        self._decoded = recording.Decoded()
        self._trees_left = True  # jobs a crash may have left: carried on before the first fetch
        self._tree_failures: dict[tuple[UUID, UUID], _TreeFailure] = {}
        self._stop = asyncio.Event()  # the service's, once ``run`` has it

    @property
    def js(self) -> JetStreamContext:
        assert self._js is not None, "the ingest connection is not open"
        return self._js

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop``; a lost connection or a missing stream is retried, never fatal."""
        self._stop = stop
        while True:
            try:
                options = bus.identity_from(self.ctx.settings, api.SERVICE).connect_options()
                options["name"] = f"coditect-{api.SERVICE}-ingest"
                nc = await nats.connect(
                    self.ctx.settings.nats_url,
                    **options,
                    connect_timeout=2,
                    reconnect_time_wait=1,
                    max_reconnect_attempts=-1,
                )
                break
            except Exception as error:
                log.error("file-event ingest cannot reach NATS (%s); retrying in 1s", error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                if stop.is_set():
                    return
        self._js = nc.jetstream()
        try:
            while not stop.is_set():
                try:
                    await self.carry_trees()
                    puller = await subscribe(self.ctx, nc)
                    try:
                        await self._consume(puller, stop)
                    finally:
                        await puller.stop()
                except Exception as error:
                    log.error("file-event ingest interrupted (%s: %s); resuming in 1s", type(error).__name__, error)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
        finally:
            await nc.close()

    async def _fetch(self, puller: Puller) -> list[Msg]:
        return await puller.fetch(self.ctx.settings.ingest_batch_size, self.ctx.settings.ingest_fetch_timeout_seconds)

    async def _consume(self, puller: Puller, stop: asyncio.Event) -> None:
        """Fetch ahead, and handle up to ``ingest_concurrency`` batches at once: one batch's transaction
        function runs on the loop while the store commits the previous one."""
        fetching = asyncio.create_task(self._fetch(puller))
        handling: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                msgs = await fetching
                fetching = asyncio.create_task(self._fetch(puller))
                if msgs:
                    handling.add(asyncio.create_task(self.handle(msgs)))
                elif self._trees_left and not self._carrying.locked():
                    # Idle: jobs that failed a moment ago go on without waiting for the next batch.
                    handling.add(asyncio.create_task(self.carry_trees()))
                if len(handling) >= self.ctx.settings.ingest_concurrency:
                    done, handling = await asyncio.wait(handling, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()  # a lost connection ends this subscription; run() resubscribes
        finally:
            fetching.cancel()
            with contextlib.suppress(BaseException):
                await fetching
            if handling:
                await asyncio.wait(handling)
                for task in handling:
                    if not task.cancelled() and task.exception() is not None:
                        log.warning("a batch ended with %s; its messages come back", task.exception())

    async def handle(self, msgs: list[Msg]) -> None:
        """One fetched batch: dead-letter the unreadable, store the rest, acknowledge what committed."""
        self.ctx.stats.batches += 1
        readable: list[Incoming] = []
        for msg in msgs:
            try:
                readable.append(Incoming(msg, self._owner(msg.subject), api.FileChange.model_validate_json(msg.data)))
            except (ValueError, ValidationError) as error:  # pydantic's ValidationError is a ValueError too
                await self.dead_letter(msg, f"invalid: {_reason(error)}")
        store_down = False
        for run in chunks(readable, self.ctx.settings.ingest_transaction_bytes):
            if store_down:
                await self._later(run, "the store is unavailable")
                continue
            try:
                await self._commit(run)
            except StoreUnavailable as error:
                log.error("file events not stored: the store is unavailable (%s); they come back later", error)
                store_down = True
                await self._later(run, f"the store is unavailable: {error}")
            except Exception as error:
                log.warning("a batch of %d file events failed (%s); storing them one by one", len(run), error)
                await self._one_by_one(run)
        if store_down:
            await self._wait_for_store()
        elif self._trees_left:
            await self.carry_trees()

    def _owner(self, subject: str) -> recording.Owner:
        owner = self._owners.get(subject)
        if owner is None:
            owner = recording.owner_of_subject(subject)
            if len(self._owners) > 100_000:
                self._owners.clear()
            self._owners[subject] = owner
        return owner

    async def _commit(self, run: list[Incoming]) -> None:
        ctx = self.ctx
        items: list[recording.Item] = [(item.owner, item.change, item.msg.data) for item in run]
        now = datetime.now(UTC)
        ctx.stats.transactions += 1
        try:
            recorded, staged = await ctx.outbox.transact(
                lambda tx: recording.record_and_stage(tx, ctx.outbox, items, now, self._tree_budget(), self._decoded)
            )
        except Exception:
            ctx.stats.failed_transactions += 1
            raise
        for item in run:
            await item.msg.ack()
        if recorded.trees:
            self._trees_left = True
        stored = recorded.count
        ctx.stats.stored += stored
        ctx.stats.duplicates += len(run) - stored
        if staged:
            await ctx.outbox.publish_soon(ctx.settings.publish_after_commit_seconds, staged)

    def _tree_budget(self) -> trees.Budget:
        settings = self.ctx.settings
        return trees.Budget(settings.ingest_tree_entries_per_transaction, settings.ingest_tree_bytes_per_transaction)

    async def carry_trees(self) -> None:
        """Carry on the directory moves left unfinished, one bounded transaction at a time (after their
        events were acknowledged: the jobs are in the store).

        Every job gets its turn in key order: a job whose transaction fails waits (a pause doubling from
        ``ingest_tree_retry_seconds``) while the jobs behind it go on, and after ``ingest_tree_max_attempts``
        failures it is parked with its error (``("tree_parked", …)``, logged and counted) instead of being
        tried forever. A store outage is nobody's job's fault: it ends the pass without counting. A stop
        request ends it between two transactions; what is left is stored and goes on at the next start."""
        async with self._carrying:
            if not self._trees_left:
                return
            self._trees_left = False
            after: tuple[UUID, UUID] | None = None
            listed: set[tuple[UUID, UUID]] = set()
            try:
                while not self._stop.is_set():
                    jobs = await self.ctx.store.run(lambda tx: repo.tree_jobs(tx, 100, after))  # noqa: B023
                    for job in jobs:
                        if self._stop.is_set():
                            break
                        listed.add(job)
                        await self._carry_job(job)
                    if len(jobs) < 100:
                        if not self._stop.is_set():  # a whole pass: forget failures of jobs gone meanwhile
                            self._tree_failures = {j: f for j, f in self._tree_failures.items() if j in listed}
                        break
                    after = jobs[-1]
            except Exception as error:  # the store is down, or listing the jobs failed: nobody's job's fault
                log.error("carrying directories' entries paused (%s: %s)", type(error).__name__, error)
                self._trees_left = True
            if self._stop.is_set() or self._tree_failures:
                self._trees_left = True  # unfinished: the next batch, an idle fetch or the next start goes on

    async def _carry_job(self, job: tuple[UUID, UUID]) -> None:
        """Carry one job to its end (or to a stop request); a failure is counted and the job paused."""
        failure = self._tree_failures.get(job)
        if failure is not None and time.monotonic() < failure.retry_at:
            return
        ws, event_id = job
        try:
            while not self._stop.is_set():
                self.ctx.stats.transactions += 1
                # A fresh budget per attempt: the store may run the function again.
                if await self.ctx.store.run(lambda tx: trees.carry_on(tx, ws, event_id, self._tree_budget())):
                    break
        except StoreUnavailable:
            raise
        except Exception as error:
            await self._tree_failed(job, f"{type(error).__name__}: {error}")
            return
        self._tree_failures.pop(job, None)

    async def _tree_failed(self, job: tuple[UUID, UUID], error: str) -> None:
        settings = self.ctx.settings
        attempts = self._tree_failures[job].attempts + 1 if job in self._tree_failures else 1
        if attempts < settings.ingest_tree_max_attempts:
            pause = min(settings.ingest_tree_retry_seconds * 2 ** (attempts - 1), _TREE_RETRY_MAX_SECONDS)
            self._tree_failures[job] = _TreeFailure(attempts, time.monotonic() + pause)
            log.warning(
                "carrying the entries of directory event %s (workspace %s) failed (%d of %d; %s); again in %.1f s",
                job[1],
                job[0],
                attempts,
                settings.ingest_tree_max_attempts,
                error,
                pause,
            )
            return
        try:
            await self.ctx.store.run(lambda tx: repo.park_tree_job(tx, *job, error[:2000], attempts))
        except Exception as park_error:  # left as it is: tried again after the longest pause
            log.error("tree job %s of workspace %s could not be parked (%s)", job[1], job[0], park_error)
            self._tree_failures[job] = _TreeFailure(attempts - 1, time.monotonic() + _TREE_RETRY_MAX_SECONDS)
            return
        self._tree_failures.pop(job, None)
        self.ctx.stats.tree_jobs_parked += 1
        log.error(
            "carrying the entries of directory event %s (workspace %s) failed %d times (%s); its job is parked "
            'under ("file_event", "tree_parked") and no longer carried on',
            job[1],
            job[0],
            attempts,
            error,
        )

    async def _one_by_one(self, run: list[Incoming]) -> None:
        for item in run:
            try:
                await self._commit([item])
            except Exception as error:
                await self._later([item], f"{type(error).__name__}: {error}")

    async def _later(self, run: list[Incoming], reason: str) -> None:
        """Ask for a redelivery, or dead-letter a message on its last delivery."""
        for item in run:
            if item.msg.metadata.num_delivered >= self.ctx.settings.ingest_max_deliver:
                await self.dead_letter(item.msg, f"failed {item.msg.metadata.num_delivered} times: {reason}")
            else:
                with contextlib.suppress(Exception):
                    await item.msg.nak(delay=self.ctx.settings.ingest_retry_delay_seconds)

    async def dead_letter(self, msg: Msg, reason: str) -> None:
        """Keep the message on the dead-letter stream, then end its deliveries (``term``). If the dead
        letter cannot be written, the message is left to come back instead."""
        sequence = msg.metadata.sequence.stream
        headers = {
            "Nats-Msg-Id": f"{api.SERVICE}-{sequence}",  # a crash between publish and term writes it once
            api.DEAD_LETTER_REASON_HEADER: reason[:1000],
            api.DEAD_LETTER_SUBJECT_HEADER: msg.subject,
            api.DEAD_LETTER_SEQUENCE_HEADER: str(sequence),
        }
        try:
            await self.js.publish(
                api.DEAD_LETTER_SUBJECT, msg.data, timeout=5.0, stream=subjects.DEAD_LETTER_STREAM, headers=headers
            )
        except Exception as error:
            log.error("message %d could not be dead-lettered (%s); it comes back later", sequence, error)
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.ctx.settings.ingest_retry_delay_seconds)
            return
        self.ctx.stats.dead_lettered += 1
        log.error(
            "file event message %d on %s dead-lettered to %s: %s",
            sequence,
            msg.subject,
            api.DEAD_LETTER_SUBJECT,
            reason,
        )
        with contextlib.suppress(Exception):
            await msg.term()

    async def _wait_for_store(self) -> None:
        """Stop fetching while the store is down, so deliveries are not spent on failures."""
        delay = 0.5
        while True:
            try:
                await self.ctx.store.check()
                return
            except StoreUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:10])
    return str(error)
