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
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from faststream.nats import NatsBroker
from fdb.subspace_impl import Subspace
from pydantic import ValidationError

from contracts.events import Event
from shared import bus
from shared.store import Store, Transaction

log = logging.getLogger(__name__)

BATCH = 100
T = TypeVar("T")

Staged = list[tuple[bytes, Event]]


class _Staging:
    """The transaction a ``transact`` attempt hands its function: the store's, which also remembers
    the events staged in it. One per attempt, so a retried attempt never carries a rolled-back event."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.staged: Staged = []

    def get(self, key: bytes) -> bytes | None:
        return self.tx.get(key)

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

    def stage(self, tx: Transaction, event: Event) -> None:
        key = self.space.pack((time.time_ns(), str(event.id)))
        tx.set(key, event.model_dump_json().encode())
        if isinstance(tx, _Staging):
            tx.staged.append((key, event))

    async def transact(self, fn: Callable[[Transaction], T]) -> tuple[T, Staged]:
        """``store.run(fn)``, and the events the committed attempt staged (for ``publish``)."""
        attempts: list[_Staging] = []

        def attempt(tx: Transaction) -> T:
            staging = _Staging(tx)
            attempts.append(staging)
            return fn(staging)

        result = await self.store.run(attempt)
        return result, attempts[-1].staged  # the store returns after the attempt that committed

    async def publish(self, staged: Staged) -> None:
        """Publish events a committed transaction staged, from memory, then clear their rows: one
        transaction instead of reading them back first. A row this leaves (the bus failed) is
        delivered by the loop; one both send is a duplicate JetStream drops by its ``Nats-Msg-Id``."""
        published: list[bytes] = []
        try:
            for key, event in staged:
                await bus.publish_event(self.broker, event)
                published.append(key)
        finally:
            if published:
                await self.store.run(lambda tx: self._clear(tx, published, []))

    async def flush(self) -> int:
        """Publish staged events in order; returns how many rows were handled (published or dead-lettered)."""
        async with self._lock:
            begin, end = self.space.range().start, self.space.range().stop
            pending = await self.store.run(lambda tx: tx.get_range(begin, end, limit=BATCH))
            published: list[bytes] = []
            undecodable: list[tuple[bytes, bytes]] = []
            try:
                for key, value in pending:
                    try:
                        event = Event.model_validate_json(value)
                    except ValidationError:
                        undecodable.append((key, value))
                        continue
                    await bus.publish_event(self.broker, event)
                    published.append(key)
            finally:
                if published or undecodable:
                    await self.store.run(lambda tx: self._clear(tx, published, undecodable))
                    for key, _ in undecodable:
                        log.error("outbox row %r cannot be decoded; moved to the dead-letter keys", key)
            return len(published) + len(undecodable)

    async def publish_soon(self, within: float, staged: Staged | None = None) -> None:
        """After a commit: publish what it staged (from memory; without ``staged``, whatever the
        outbox holds), for ``within`` seconds at most. The change is committed whatever happens
        here; what is not out in time, the background loop delivers."""
        sending = self.publish(staged) if staged is not None else self.flush()
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
