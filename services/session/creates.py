"""Creates of many requests in one transaction (group commit at the use case's level).

A create's own work is small; what it cost was per transaction and per request: a transaction
attempt, a hand-off to the store's writer thread and back, a JetStream round trip (see the README's
profile notes). Creates that arrive while the previous batch commits are inserted together: one
attempt, one commit, their events published together. Each keeps its own semantics: the quota is
checked per user against the counter read once in the batch's transaction plus the batch's own
inserts (so it is as exact as one create at a time), a create over the quota fails alone, and each
event carries its request's actor and trace id (built in the request, before it is queued).

One batch is in flight at a time in a process, so creates of one user never conflict with each
other here; replicas still meet in the store (a conflict runs the whole batch again).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from contracts.events import Event
from services.session import repository as repo
from services.session import rules
from shared.errors import ServiceError
from shared.outbox import Outbox, Staged
from shared.store import Transaction

log = logging.getLogger(__name__)

BATCH_LIMIT = 256  # creates per transaction at most (about 3 kB of writes each)


@dataclass
class _Create:
    record: repo.SessionRecord
    event: Event
    done: asyncio.Future[None]


class CreateBatcher:
    def __init__(self, outbox: Outbox, max_active: Callable[[], int], publish_within: float) -> None:
        self.outbox = outbox
        self.max_active = max_active
        self.publish_within = publish_within
        self._pending: list[_Create] = []
        self._runner: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Task[None]] = set()
        self.transactions = 0  # batches committed or failed (for tests and profiles)

    async def create(self, record: repo.SessionRecord, event: Event) -> None:
        """Insert ``record`` and stage ``event``; returns once committed and the event published (or
        its publishing given up for the outbox loop); raises the quota error or the store's."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Create(record, event, done))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())
        await done

    async def _run(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:BATCH_LIMIT], self._pending[BATCH_LIMIT:]
                self.transactions += 1
                try:
                    outcomes, staged = await self.outbox.transact(functools.partial(self._insert, batch))
                except Exception as error:  # the store: every create of the batch gets it
                    for item in batch:
                        _settle(item.done, error)
                    continue
                for item, outcome in zip(batch, outcomes, strict=True):
                    if outcome is not None:
                        _settle(item.done, outcome)
                created = [item for item, outcome in zip(batch, outcomes, strict=True) if outcome is None]
                task = asyncio.create_task(self._publish(created, staged))
                self._publishing.add(task)
                task.add_done_callback(self._publishing.discard)
        finally:
            self._runner = None

    async def _publish(self, created: list[_Create], staged: Staged) -> None:
        """The batch's events together; its requests answer after that, as a single create would."""
        try:
            await self.outbox.publish_soon(self.publish_within, staged)
        finally:
            for item in created:
                _settle(item.done, None)

    def _insert(self, batch: list[_Create], tx: Transaction) -> list[ServiceError | None]:
        maximum = self.max_active()
        active: dict[tuple[UUID, UUID], int] = {}
        outcomes: list[ServiceError | None] = []
        for item in batch:
            owner = (item.record.tenant_id, item.record.user_id)
            if owner not in active:
                active[owner] = repo.count_active(tx, *owner, maximum)
            try:
                rules.check_quota(active[owner], maximum)
            except ServiceError as error:
                outcomes.append(error)
                continue
            repo.insert(tx, item.record)
            active[owner] += 1
            self.outbox.stage(tx, item.event)
            outcomes.append(None)
        return outcomes


def _settle(future: asyncio.Future[None], outcome: BaseException | None) -> None:
    if future.done():  # the request went away (cancelled)
        return
    if outcome is None:
        future.set_result(None)
    else:
        future.set_exception(outcome)
