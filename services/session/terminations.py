"""Sessions that end because of other services' events: a user who logs out of every device, a
user taken out of their tenant, and a deleted tenant end every workspace session they had.

Idempotent by event id: the transaction that ends the last batch also records the event as
processed, and a redelivery finds the marker. A redelivery of an event that failed halfway resumes
where it stopped: the sessions already ended have left the live range it reads. Only sessions
created before the event end, so a session opened after it (the consumer lagging, a late
redelivery) is left alone. Each transaction ends at most ``BATCH`` sessions: a tenant with
thousands of sessions is many short transactions, never one over the store's limits.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from pydantic import BaseModel, ValidationError

from contracts import auth
from contracts.events import Event
from services.session import repository as repo
from services.session import rules
from services.session.context import SessionContext, system_actor, utcnow
from services.session.sessions import system_change
from shared.store import Transaction

log = logging.getLogger(__name__)

BATCH = 100

# One batch of live sessions after a position: (tx, position, limit) -> (sessions, next position or None).
Batches = Callable[[Transaction, bytes | None, int], tuple[list[repo.SessionRecord], bytes | None]]


def _data(event: Event, model: type[BaseModel]) -> BaseModel | None:
    try:
        return model.model_validate(event.data)
    except ValidationError:
        log.error("%s event %s has data this service cannot read; skipped", event.type, event.id)
        return None


async def on_auth_logout(ctx: SessionContext, event: Event) -> int:
    """Terminate the user's active and suspended sessions if the logout was of every device; returns how many."""
    data = _data(event, auth.LogoutData)
    if not isinstance(data, auth.LogoutData) or data.reason != "logout_all":
        return 0
    user_id = data.user_id or event.actor.user_id
    tenant_id = event.tenant_id
    if user_id is None or tenant_id is None:
        log.error("auth.logout event %s names no user or tenant; skipped", event.id)
        return 0
    return await _terminate(ctx, event, functools.partial(repo.live_batch, tenant_id=tenant_id, user_id=user_id))


async def on_user_removed(ctx: SessionContext, event: Event) -> int:
    """A user taken out of their tenant: their sessions in that tenant end; returns how many."""
    data = _data(event, auth.UserRemovedData)
    if not isinstance(data, auth.UserRemovedData):
        return 0
    if event.tenant_id is None:
        log.error("auth.user_removed event %s names no tenant; skipped", event.id)
        return 0
    return await _terminate(
        ctx, event, functools.partial(repo.live_batch, tenant_id=event.tenant_id, user_id=data.user_id)
    )


async def on_tenant_deleted(ctx: SessionContext, event: Event) -> int:
    """A deleted tenant: every session of every user it had ends (read from the tenant's own index,
    so a user missing from ``data.user_ids`` is not missed); returns how many."""
    if not isinstance(_data(event, auth.TenantDeletedData), auth.TenantDeletedData):
        return 0
    if event.tenant_id is None:
        log.error("auth.tenant_deleted event %s names no tenant; skipped", event.id)
        return 0
    return await _terminate(ctx, event, functools.partial(repo.tenant_live_batch, tenant_id=event.tenant_id))


async def _terminate(ctx: SessionContext, event: Event, batches: Batches) -> int:
    """End, as the system, the live sessions ``batches`` reads that were created before the event:
    one transaction per batch, the last one marking the event processed."""
    now = utcnow()

    def step(tx: Transaction, after: bytes | None) -> tuple[int, bytes | None, bool]:
        if repo.processed(tx, event.id):
            return 0, None, True
        batch, next_key = batches(tx, after, BATCH)
        ended = [s for s in batch if s.created_at <= event.occurred_at]
        for before in ended:
            system_change(ctx, tx, before, rules.with_status(before, "terminated", now), system_actor())
        if next_key is None:
            repo.mark_processed(tx, event.id, now)
        return len(ended), next_key, next_key is None

    total, position, done = 0, None, False
    while not done:
        count, position, done = await ctx.store.run(functools.partial(step, after=position))
        total += count
        if count:
            await ctx.publish_staged()  # a batch's events go out as it commits, not all at the end
    if total:
        log.info("%s event %s ended %d sessions", event.type, event.id, total)
    return total
