"""Transactional outbox: events are staged in the same store transaction as the change they
describe, then published to JetStream. A crash between commit and publish delays an event; it
never loses it. Re-publishing is harmless: the event id is the ``Nats-Msg-Id``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from faststream.nats import NatsBroker
from fdb.subspace_impl import Subspace

from contracts.events import Event
from shared import bus
from shared.store import Store, Transaction

log = logging.getLogger(__name__)

BATCH = 100


class Outbox:
    def __init__(self, store: Store, space: Subspace, broker: NatsBroker) -> None:
        self.store = store
        self.space = space
        self.broker = broker
        self._lock = asyncio.Lock()

    def stage(self, tx: Transaction, event: Event) -> None:
        tx.set(self.space.pack((time.time_ns(), str(event.id))), event.model_dump_json().encode())

    async def flush(self) -> int:
        """Publish staged events in order; returns how many were published."""
        async with self._lock:
            begin, end = self.space.range().start, self.space.range().stop
            pending = await self.store.run(lambda tx: tx.get_range(begin, end, limit=BATCH))
            published: list[bytes] = []
            try:
                for key, value in pending:
                    await bus.publish_event(self.broker, Event.model_validate_json(value))
                    published.append(key)
            finally:
                if published:

                    def clear(tx: Transaction) -> None:
                        for key in published:
                            tx.clear(key)

                    await self.store.run(clear)
            return len(published)

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
