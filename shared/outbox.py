"""Transactional outbox: events are staged in the same store transaction as the change they
describe, then published to JetStream. A crash between commit and publish delays an event; it
never loses it. Re-publishing inside JetStream's duplicate window is a no-op (the event id is the
``Nats-Msg-Id``); later re-publishes are duplicates that consumers drop by event id.

A request that ran its transaction through ``transact`` publishes the events it staged from memory
right after its commit, then clears their rows; without it (or for whatever is left: the bus is
down, JetStream is slow) the rows are read back and delivered by ``flush`` and the background loop.
A row that cannot be decoded is moved to a dead-letter key instead of blocking every event behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

from faststream.nats import NatsBroker
from fdb.subspace_impl import Subspace
from pydantic import ValidationError

from contracts.events import Event
from shared import bus
from shared.store import Store, Transaction

log = logging.getLogger(__name__)

BATCH = 100
CLEAR_BATCH = 1000  # published rows cleared per transaction at most
T = TypeVar("T")


class StagedEvent(NamedTuple):
    """An event a transaction staged: its outbox row's key, the event, and its JSON (the row's value,
    serialized once: the same bytes are published)."""

    key: bytes
    event: Event
    payload: bytes


Staged = list[StagedEvent]


class _Staging:
    """The transaction a ``transact`` attempt hands its function: the store's, which also remembers
    the events staged in it. One per attempt, so a retried attempt never carries a rolled-back event."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.staged: Staged = []
        # The store's own methods, bound here: no wrapper call per read or write (bulk ingest writes
        # four keys per event through this).
        self.get = tx.get  # type: ignore[method-assign]
        self.get_many = tx.get_many  # type: ignore[method-assign]
        self.set = tx.set  # type: ignore[method-assign]

    def get(self, key: bytes) -> bytes | None:
        return self.tx.get(key)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return self.tx.get_many(keys)

    def set(self, key: bytes, value: bytes) -> None:
        self.tx.set(key, value)

    def clear(self, key: bytes) -> None:
        self.tx.clear(key)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self.tx.clear_range(begin, end)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[tuple[bytes, bytes]]:
        return self.tx.get_range(begin, end, limit=limit, reverse=reverse)

    def add(self, key: bytes, delta: int) -> None:
        self.tx.add(key, delta)

    def __getattr__(self, name: str) -> Any:  # whatever else a store's transactions offer
        return getattr(self.tx, name)


class Outbox:
    def __init__(self, store: Store, space: Subspace, broker: NatsBroker, *, dead_letters: Subspace) -> None:
        """``dead_letters`` must lie outside ``space`` (a sibling key of the service's prefix)."""
        self.store = store
        self.space = space
        self.dead_letters = dead_letters
        self.broker = broker
        self._lock = asyncio.Lock()
        # Published rows waiting for the clear transaction that is running or the next one.
        self._to_clear: list[bytes] = []
        self._next_clear: asyncio.Future[None] | None = None  # done when the queued keys are cleared
        self._clearer: asyncio.Task[None] | None = None

    def stage(self, tx: Transaction, event: Event) -> None:
        key = self.space.pack((time.time_ns(), str(event.id)))
        payload = event.__pydantic_serializer__.to_json(event)  # what model_dump_json gives, as bytes
        tx.set(key, payload)
        if isinstance(tx, _Staging):
            tx.staged.append(StagedEvent(key, event, payload))

    async def transact(self, fn: Callable[[Transaction], T]) -> tuple[T, Staged]:
        """``store.run(fn)``, and the events the committed attempt staged (for ``publish``)."""
        attempts: list[_Staging] = []

        def attempt(tx: Transaction) -> T:
            staging = _Staging(tx)
            attempts.append(staging)
            return fn(staging)

        result = await self.store.run(attempt)
        return result, attempts[-1].staged  # the store returns after the attempt that committed

    async def publish(self, staged: Staged, *, wait_for_clear: bool = True) -> None:
        """Publish events a committed transaction staged, from memory, then clear their rows: no
        read-back. The events are sent together and their acks awaited together (one round trip to
        JetStream, not one per event); a row is cleared only once its event's ack came. A row this
        leaves (the bus failed) is delivered by the loop; one both send is a duplicate JetStream drops
        by its ``Nats-Msg-Id``. Raises the first failure, after clearing what did go out. Without
        ``wait_for_clear`` it returns once the acks came and the clear commits behind it (a request
        need not wait: a row a crash leaves is re-published, and dropped as a duplicate by id)."""
        if not staged:
            return
        outcomes = await bus.publish_events(self.broker, [(item.event, item.payload) for item in staged])
        published = [item.key for item, outcome in zip(staged, outcomes, strict=True) if outcome is None]
        if published:
            cleared = self._queue_clear(published)
            if wait_for_clear:
                await asyncio.shield(cleared)
        for outcome in outcomes:
            if outcome is not None:
                raise outcome

    def _queue_clear(self, keys: list[bytes]) -> asyncio.Future[None]:
        """Clear published rows, sharing one transaction with every other request's rows that arrive
        while a clear is running (the requests of a busy service: one commit for many, not one
        each). The future is done once these keys' transaction committed."""
        self._to_clear.extend(keys)
        if self._next_clear is None:
            self._next_clear = asyncio.get_running_loop().create_future()
            self._next_clear.add_done_callback(_retrieve)
        waiting = self._next_clear
        if self._clearer is None:
            self._clearer = asyncio.create_task(self._clear_queued())
        return waiting

    async def _clear_queued(self) -> None:
        try:
            while self._to_clear:
                keys, self._to_clear = self._to_clear[:CLEAR_BATCH], self._to_clear[CLEAR_BATCH:]
                done = self._next_clear
                if not self._to_clear:
                    self._next_clear = None  # keys queued from now on wait for the next transaction
                try:
                    await self.store.run(functools.partial(self._clear, published=keys, undecodable=[]))
                except Exception as error:  # the rows stay: the loop re-publishes them (deduplicated)
                    if done is not None and done is not self._next_clear:
                        done.set_exception(error)
                    continue
                if done is not None and done is not self._next_clear:
                    done.set_result(None)
        finally:
            self._clearer = None

    async def flush(self) -> int:
        """Publish staged events (together, in order), clear those acknowledged; returns how many rows
        were handled (published or dead-lettered)."""
        async with self._lock:
            begin, end = self.space.range().start, self.space.range().stop
            pending = await self.store.run(lambda tx: tx.get_range(begin, end, limit=BATCH))
            decoded: list[tuple[bytes, Event, bytes]] = []
            undecodable: list[tuple[bytes, bytes]] = []
            for key, value in pending:
                try:
                    decoded.append((key, Event.model_validate_json(value), value))
                except ValidationError:
                    undecodable.append((key, value))
            outcomes = await bus.publish_events(self.broker, [(event, value) for _, event, value in decoded])
            published = [key for (key, _, _), outcome in zip(decoded, outcomes, strict=True) if outcome is None]
            if published or undecodable:
                await self.store.run(lambda tx: self._clear(tx, published, undecodable))
                for key, _ in undecodable:
                    log.error("outbox row %r cannot be decoded; moved to the dead-letter keys", key)
            for outcome in outcomes:
                if outcome is not None:
                    raise outcome
            return len(published) + len(undecodable)

    async def publish_soon(self, within: float, staged: Staged | None = None) -> None:
        """After a commit: publish what it staged (from memory; without ``staged``, whatever the
        outbox holds), for ``within`` seconds at most. The change is committed whatever happens
        here; what is not out in time, the background loop delivers."""
        sending = self.publish(staged, wait_for_clear=False) if staged is not None else self.flush()
        try:
            await asyncio.wait_for(asyncio.shield(sending), within)
        except TimeoutError:
            log.warning("events not yet published after commit; the outbox will deliver them")
        except Exception as error:
            log.warning("events not published after commit (%s); the outbox will deliver them", error)

    def _clear(self, tx: Transaction, published: list[bytes], undecodable: list[tuple[bytes, bytes]]) -> None:
        for key in published:
            tx.clear(key)
        for key, value in undecodable:
            tx.set(self.dead_letters.pack(self.space.unpack(key)), value)
            tx.clear(key)

    async def run(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """Publish what earlier attempts could not (bus down, crash after commit)."""
        while not stop.is_set():
            try:
                while await self.flush() == BATCH:
                    pass
            except Exception as error:
                log.warning("outbox flush failed (%s); will retry", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


def _retrieve(future: asyncio.Future[None]) -> None:
    """A clear nobody waits for any more (its requests timed out) must not log "never retrieved"."""
    if not future.cancelled():
        future.exception()
