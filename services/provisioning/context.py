"""What every provisioning use case works with: the store, the outbox, the settings, the backend, and
the work started in the background (one task per workspace at a time in this replica)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from contracts import provisioning as api
from contracts.events import Actor, Event
from services.provisioning.backends import Backend
from services.provisioning.settings import ProvisioningSettings
from services.provisioning.states import WorkspaceRecord
from shared.outbox import Outbox
from shared.store import Store, Transaction
from shared.telemetry import current_trace_id

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def workspace_event(type_: str, record: WorkspaceRecord, actor: Actor | None = None) -> Event:
    """The one shape of every workspace event: ``data.user_id`` routes live push, ``data.workspace`` is the state."""
    data = api.WorkspaceEventData(user_id=record.user_id, workspace=record.public())
    return Event(
        type=type_,
        tenant_id=record.tenant_id,
        actor=actor or Actor(kind="system"),
        target=f"workspace:{record.id}",
        outcome="failure" if type_ == api.WORKSPACE_FAILED else "success",
        trace_id=current_trace_id(),
        data=data.model_dump(mode="json"),
    )


@dataclass
class ProvisioningContext:
    store: Store
    outbox: Outbox
    settings: ProvisioningSettings
    backend: Backend
    running: dict[tuple[UUID, UUID], asyncio.Task[None]] = field(default_factory=dict)

    def stage(self, tx: Transaction, type_: str, record: WorkspaceRecord, actor: Actor | None = None) -> None:
        self.outbox.stage(tx, workspace_event(type_, record, actor))

    async def publish_staged(self) -> None:
        await self.outbox.publish_soon(self.settings.publish_after_commit_seconds)

    def start(
        self, tenant_id: UUID, user_id: UUID, work: Callable[[], Coroutine[Any, Any, None]]
    ) -> asyncio.Task[None] | None:
        """Run ``work`` for one workspace unless this replica already works on it (the store's claim
        keeps other replicas out)."""
        key = (tenant_id, user_id)
        current = self.running.get(key)
        if current is not None and not current.done():
            return None
        task = asyncio.create_task(work())
        self.running[key] = task
        task.add_done_callback(lambda t: self.running.pop(key, None) if self.running.get(key) is t else None)
        return task

    async def cancel_all(self) -> None:
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
