"""Transactional outbox: events are staged in the same store transaction as the change they
describe, then published to JetStream. A crash between commit and publish delays an event; it
never loses it. Re-publishing inside JetStream's duplicate window is a no-op (the event id is the
``Nats-Msg-Id``); later re-publishes are duplicates that consumers drop by event id.

A request publishes what it staged right after its commit, for a short while at most; whatever is
left (the bus is down, JetStream is slow) is delivered by the background loop. A row that cannot
be decoded is moved to a dead-letter key instead of blocking every event behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from faststream.nats import NatsBroker
from fdb.subspace_impl import Subspace
from pydantic import ValidationError

from contracts.events import Event
from shared import bus
from shared.store import Store, Transaction

log = logging.getLogger(__name__)

BATCH = 100


class Outbox:
    def __init__(self, store: Store, space: Subspace, broker: NatsBroker, *, dead_letters: Subspace) -> None:
        """``dead_letters`` must lie outside ``space`` (a sibling key of the service's prefix)."""
        self.store = store
        self.space = space
        self.dead_letters = dead_letters
        self.broker = broker
        self._lock = asyncio.Lock()

    def stage(self, tx: Transaction, event: Event) -> None:
        tx.set(self.space.pack((time.time_ns(), str(event.id))), event.model_dump_json().encode())

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

    async def publish_soon(self, within: float) -> None:
        """After a commit: publish what was staged, for ``within`` seconds at most. The change is
        committed whatever happens here; what is not out in time, the background loop delivers."""
        try:
            await asyncio.wait_for(asyncio.shield(self.flush()), within)
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
