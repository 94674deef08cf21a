"""The durable consumer of every domain event: fetch a batch, append it to the tenants' chains, then
acknowledge it.

Why not FastStream's subscriber: its per-message pipeline cost about four times nats-py's fetch + ack
(STACK-NOTES: ~11,000 vs ~43,000 msg/s), which alone would miss 10,000 records/s, and the chain wants the
whole batch at once (one transaction for the batch's tenants, hashes computed in memory), not one handler call
per message. Why not nats-py's ``fetch`` either: see ``puller`` (same protocol, a fraction of the cost).

Order and exactly-once:
- Batches are committed one after the other, in fetch order, each acknowledged once committed; the next
  batch is fetched and read while one commits (two in flight at most).
- On every (re)start the events the consumer delivered but never saw acknowledged (a crash, a dropped
  connection) are read by stream sequence and recorded before anything newer is fetched (``recover``).
- A commit that fails (store down) is retried here, never nacked, so later events cannot overtake it.
- A redelivered event finds its "seen" marker, written in the transaction of its record: recorded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

from contracts import audit as api
from contracts import subjects
from services.audit import repository as repo
from services.audit.chain import timestamp
from services.audit.context import AuditContext
from services.audit.records import NotAnEvent, Prepared, prepare
from shared.puller import Puller

log = logging.getLogger(__name__)

Appends = dict[str, list[Prepared]]  # events to append, by chain, in one transaction

# Bytes of records per transaction, well under FoundationDB's 10 MB (records are at most ~100 kB each).
CHUNK_BYTES = 2_000_000
FETCH_TIMEOUT_SECONDS = 1.0
# Batches in flight: one committing, one read and waiting. The consumer's max_ack_pending covers them all,
# so after a crash they come back, in order, before anything newer.
PIPELINE_DEPTH = 2


def transactions(by_chain: dict[str, list[Prepared]], count: int, size: int = CHUNK_BYTES) -> list[Appends]:
    """A batch's events as store transactions of at most ``count`` records and roughly ``size`` bytes
    each, several tenants' chains sharing one: a batch of many tenants' events costs one commit, not
    one per tenant. A chain's events keep their order (its later events are in a later transaction)."""
    groups: list[Appends] = []
    current: Appends = {}
    records = weight = 0
    for chain, events in by_chain.items():
        for event in events:
            estimate = 400 + len(event.front)
            if records and (records >= count or weight + estimate > size):
                groups.append(current)
                current, records, weight = {}, 0, 0
            current.setdefault(chain, []).append(event)
            records += 1
            weight += estimate
    if current:
        groups.append(current)
    return groups


@dataclass
class Batch:
    messages: list[Msg]  # acknowledged once the batch is committed
    by_chain: dict[str, list[Prepared]]


def _group(bodies: list[bytes]) -> dict[str, list[Prepared]]:
    """The events by chain, in order; what is not an event is logged and skipped (acknowledged with
    its batch, never recorded)."""
    by_chain: dict[str, list[Prepared]] = {}
    for body in bodies:
        try:
            prepared = prepare(body)
        except NotAnEvent as error:
            log.error("a message on the events stream is not an event (%s); acknowledged, not recorded", error)
            continue
        by_chain.setdefault(prepared.chain, []).append(prepared)
    return by_chain


def read_batch(messages: list[Msg]) -> Batch:
    return Batch(messages, _group([message.data for message in messages]))


def read_bodies(bodies: list[bytes]) -> Batch:
    return Batch([], _group(bodies))


class RecoveryStopped(Exception):
    """The service stopped while replaying; nothing was acknowledged."""


class Appender:
    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx
        self.since_checkpoint: dict[str, int] = {}
        self.appended = 0  # records appended by this process (tests and the bench read it)
        self.batches = 0  # fetched batches recorded and acknowledged (tests read it)

    def consumer_config(self) -> ConsumerConfig:
        settings = self.ctx.settings
        return ConsumerConfig(
            # name= as well: nats-py then names the filter in the create subject, which the bus
            # permissions pin (shared/buspolicy.py).
            name=api.EVENTS_DURABLE,
            durable_name=api.EVENTS_DURABLE,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=settings.audit_ack_wait_seconds,
            max_ack_pending=settings.audit_fetch_batch * PIPELINE_DEPTH,
            filter_subject=subjects.EVENTS_SUBJECTS[0],
        )

    async def ensure_consumer(self, js: JetStreamContext) -> None:
        """The durable consumer, created once with ``consumer_config`` (an existing one is left as it is)."""
        try:
            await js.consumer_info(subjects.EVENTS_STREAM, api.EVENTS_DURABLE)
        except NotFoundError:
            with contextlib.suppress(BadRequestError):  # another process created it just now
                await js.add_consumer(subjects.EVENTS_STREAM, config=self.consumer_config())

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            js, nc = self.ctx.js, self.ctx.nc
            if js is None or nc is None:
                await asyncio.sleep(0.1)
                continue
            puller = Puller(nc, subjects.EVENTS_STREAM, api.EVENTS_DURABLE)
            try:
                await self.ensure_consumer(js)
                await puller.start()
                await self.recover(js, stop)
            except Exception as error:
                log.warning("audit cannot start its event consumer yet (%s); retrying", error)
                await puller.stop()
                await asyncio.sleep(1)
                continue
            # Unsubscribed as soon as the service stops: the broker's drain would otherwise wait for
            # the pull request in flight.
            watcher = asyncio.create_task(self._stop_on(puller, stop))
            try:
                await self._consume(puller, stop)
            except Exception as error:  # never let the feed die: re-subscribe, replay, go on
                log.error("audit's event consumer failed (%s); re-subscribing", error, exc_info=error)
                await asyncio.sleep(1)
            finally:
                watcher.cancel()
                await puller.stop()

    async def recover(self, js: JetStreamContext, stop: asyncio.Event) -> int:
        """Record, in stream order, the events a previous subscription received but never acknowledged
        (a crash, a dropped connection), before fetching anything newer. Left to the server, they would
        come back only after ``ack_wait``, behind newer events: out of order. Read here by stream
        sequence; their redelivery later finds them recorded. Returns how many were read."""
        info = await js.consumer_info(subjects.EVENTS_STREAM, api.EVENTS_DURABLE)
        first = (info.ack_floor.stream_seq or 0) + 1 if info.ack_floor else 1
        last = (info.delivered.stream_seq or 0) if info.delivered else 0
        bodies: list[bytes] = []
        for seq in range(first, last + 1):
            try:
                message = await js.get_msg(subjects.EVENTS_STREAM, seq)
            except NotFoundError:
                continue  # removed by the stream's age limit
            if message.data:
                bodies.append(message.data)
        size = self.ctx.settings.audit_fetch_batch
        for start in range(0, len(bodies), size):
            if not await self.handle(read_bodies(bodies[start : start + size]), stop):
                raise RecoveryStopped
        if bodies:
            log.info("audit replayed %d events delivered before but never acknowledged", len(bodies))
        return len(bodies)

    @staticmethod
    async def _stop_on(puller: Puller, stop: asyncio.Event) -> None:
        await stop.wait()
        await puller.stop()

    async def _consume(self, puller: Puller, stop: asyncio.Event) -> None:
        """Two stages: this loop fetches and reads batch N+1 while the writer commits batch N (the commit
        runs on the store's thread, so the two overlap). The writer takes batches in fetch order."""
        batch, linger = self.ctx.settings.audit_fetch_batch, self.ctx.settings.audit_fetch_linger_seconds
        ready: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=PIPELINE_DEPTH - 1)
        writer = asyncio.create_task(self._write(ready, stop))
        try:
            while not stop.is_set() and not writer.done():
                try:
                    messages = await puller.fetch(batch, timeout=FETCH_TIMEOUT_SECONDS, linger=linger)
                    if not messages:
                        continue
                except Exception as error:
                    log.warning("audit could not fetch events (%s); retrying", error)
                    await asyncio.sleep(1)
                    break
                queued = asyncio.ensure_future(ready.put(read_batch(messages)))
                await asyncio.wait({queued, writer}, return_when=asyncio.FIRST_COMPLETED)
                if not queued.done():  # the writer stopped: nothing will take this batch
                    queued.cancel()
                    break
        finally:
            if not writer.done():
                await ready.put(None)  # after what is queued: the writer commits that first
            await writer

    async def _write(self, ready: asyncio.Queue[Batch | None], stop: asyncio.Event) -> None:
        while (batch := await ready.get()) is not None:
            if not await self.handle(batch, stop):
                return

    async def handle(self, batch: Batch, stop: asyncio.Event) -> bool:
        """Record a batch and acknowledge it; False if stopped before it was committed (no acks)."""
        for appends in transactions(batch.by_chain, self.ctx.settings.audit_commit_chunk):
            if not await self._append(appends, stop):
                return False
        self.batches += 1
        try:
            for message in batch.messages:
                await message.ack()
        except Exception as error:
            # Committed: an event whose ack was lost comes back after ack_wait and is found recorded.
            log.warning("audit could not acknowledge a committed batch (%s); it will be redelivered", error)
        return True

    async def _append(self, appends: Appends, stop: asyncio.Event) -> bool:
        """One transaction; a failure (store down, a conflict with another replica) is retried here."""
        delay = 0.2
        while True:
            recorded_at = timestamp(datetime.now(UTC))
            try:
                append = partial(repo.append_chains, appends=appends, recorded_at=recorded_at)
                appended = await self.ctx.store.run(append)
                break
            except Exception as error:
                if stop.is_set():
                    return False
                log.warning("audit could not append to %d chain(s) (%s); retrying in %.1fs", len(appends), error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        for chain, count in appended.items():
            self.appended += count
            if count:
                self._grew(chain, count)
        return True

    def _grew(self, chain: str, appended: int) -> None:
        self.ctx.dirty.add(chain)
        count = self.since_checkpoint.get(chain, 0) + appended
        if count >= self.ctx.settings.audit_checkpoint_every_records:
            self.ctx.checkpoint_now.set()
            count = 0
        self.since_checkpoint[chain] = count
