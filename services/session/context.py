"""What every session use case works with: the store, the outbox, the settings, and the events they
all stage (one shape for the four types, in the transaction of the change)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar
from uuid import UUID, uuid4

from contracts import session as api
from contracts.events import Actor, Event
from contracts.identity import BusRequest
from services.session.creates import CreateBatcher
from services.session.settings import SessionSettings
from shared.errors import caller_of
from shared.outbox import Outbox, Staged
from shared.store import Store, Transaction
from shared.telemetry import current_trace_id

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def caller_actor(message: BusRequest) -> Actor:
    caller = caller_of(message)
    return Actor(kind="human", user_id=caller.user_id, ip=message.client.ip, user_agent=message.client.user_agent)


def system_actor() -> Actor:
    """The platform itself: the idle sweep, terminations that follow other services' events."""
    return Actor(kind="system")


_SESSION_JSON = api.Session.__pydantic_serializer__


def session_event(type_: str, session: api.Session, actor: Actor) -> Event:
    """The one shape of every session event (``contracts.session``): live push and audit read it."""
    # Constructed, not validated: every field is typed already, and ``data`` is what
    # ``SessionEventData(...).model_dump(mode="json")`` gives, the session through ``Session``'s own
    # serializer (only the fields clients see, also for a stored record). Validating it all again
    # cost more than the create's transaction function (README, "Benchmarks").
    return Event.model_construct(
        id=uuid4(),
        type=type_,
        tenant_id=session.tenant_id,
        occurred_at=datetime.now(UTC),
        actor=actor,
        target=f"session:{session.id}",
        outcome="success",
        trace_id=current_trace_id(),
        traceparent=None,
        data={"user_id": str(session.user_id), "session": _SESSION_JSON.to_python(session, mode="json")},
    )


@dataclass
class SessionContext:
    store: Store
    outbox: Outbox
    settings: SessionSettings
    # One quota-checking transaction per user at a time in this process (forks, resumes; creates are
    # batched by ``creates``, one batch at a time): they all read the user's
    # active-session counter, so concurrent ones would conflict and retry (all but one per commit
    # batch); queued here they commit one after another without wasted attempts. Replicas still
    # meet in the store, which keeps the quota exact either way.
    _quota_locks: weakref.WeakValueDictionary[tuple[UUID, UUID], asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary
    )

    creates: CreateBatcher = field(init=False)

    def __post_init__(self) -> None:
        self.creates = CreateBatcher(
            self.outbox,
            lambda: self.settings.max_active_sessions_per_user,
            self.settings.publish_after_commit_seconds,
        )

    def quota_lock(self, tenant_id: UUID, user_id: UUID) -> asyncio.Lock:
        lock = self._quota_locks.get((tenant_id, user_id))
        if lock is None:
            lock = self._quota_locks[(tenant_id, user_id)] = asyncio.Lock()
        return lock

    def stage(self, tx: Transaction, type_: str, session: api.Session, actor: Actor) -> None:
        """Stage an event in the outbox of this transaction."""
        self.outbox.stage(tx, session_event(type_, session, actor))

    async def transact(self, fn: Callable[[Transaction], T]) -> tuple[T, Staged]:
        """Run a transaction that stages events: its result and the events its committed attempt staged."""
        return await self.outbox.transact(fn)

    async def publish_staged(self, staged: Staged | None = None) -> None:
        """After a commit: publish what it staged, from memory (without ``staged``: whatever the outbox
        holds, read back). The change is committed whatever happens here."""
        await self.outbox.publish_soon(self.settings.publish_after_commit_seconds, staged)
