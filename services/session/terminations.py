"""Sessions that end because of other services' events: a user who logs out of every device ends
every workspace session they had.

Idempotent by event id: the transaction that ends the last batch also records the event as
processed, and a redelivery finds the marker. Only sessions created before the event end, so a
session opened after the logout (the consumer lagging, a late redelivery) is left alone.
"""

from __future__ import annotations

import functools
import logging

from pydantic import ValidationError

from contracts import auth
from contracts.events import Event
from services.session import repository as repo
from services.session import rules
from services.session.context import SessionContext, system_actor, utcnow
from services.session.sessions import system_change
from shared.store import Transaction

log = logging.getLogger(__name__)

BATCH = 100


async def on_auth_logout(ctx: SessionContext, event: Event) -> int:
    """Terminate the user's active and suspended sessions if the logout was of every device; returns how many."""
    try:
        data = auth.LogoutData.model_validate(event.data)
    except ValidationError:
        log.error("auth.logout event %s has data this service cannot read; skipped", event.id)
        return 0
    if data.reason != "logout_all":
        return 0
    user_id = data.user_id or event.actor.user_id
    tenant_id = event.tenant_id
    if user_id is None or tenant_id is None:
        log.error("auth.logout event %s names no user or tenant; skipped", event.id)
        return 0
    now = utcnow()

    def step(tx: Transaction, after: bytes | None) -> tuple[int, bytes | None, bool]:
        if repo.processed(tx, event.id):
            return 0, None, True
        batch, next_key = repo.live_batch(tx, tenant_id, user_id, after, BATCH)
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
    if total:
        await ctx.publish_staged()
    return total
