"""Background upkeep: suspend sessions idle for too long, prune what no cursor or redelivery needs.

Safe with several replicas: each suspension is a compare-and-set in the transaction that reads the
idle index, so a replica that loses the race finds the session suspended already and does nothing
(no second event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from services.session import repository as repo
from services.session import rules
from services.session.context import SessionContext, system_actor, utcnow
from services.session.sessions import system_change
from shared.store import Transaction

log = logging.getLogger(__name__)

BATCH = 100
PRUNE_BATCH = 500
# Longer than the events stream keeps an event (7 days): no redelivery can outlive its marker.
KEEP_PROCESSED = timedelta(days=8)


async def suspend_idle(ctx: SessionContext, now: datetime) -> int:
    """Suspend every active session last accessed before ``now`` minus the idle time; returns how many."""
    cutoff = now - timedelta(seconds=ctx.settings.idle_suspend_after_seconds)

    def step(tx: Transaction) -> int:
        idle = repo.idle_batch(tx, cutoff, BATCH)
        for before in idle:
            system_change(ctx, tx, before, rules.with_status(before, "suspended", now), system_actor())
        return len(idle)

    total = 0
    while True:
        count = await ctx.store.run(step)
        total += count
        if count < BATCH:
            break
    if total:
        log.info("suspended %d idle sessions", total)
        await ctx.publish_staged()
    return total


async def prune(ctx: SessionContext, now: datetime) -> None:
    """Forget list tombstones older than any honoured cursor, and old processed-event markers."""
    tombstones_before = now - timedelta(seconds=ctx.settings.list_cursor_ttl_seconds)
    while await ctx.store.run(lambda tx: repo.prune_tombstones(tx, tombstones_before, PRUNE_BATCH)) == PRUNE_BATCH:
        pass
    while await ctx.store.run(lambda tx: repo.prune_processed(tx, now - KEEP_PROCESSED, PRUNE_BATCH)) == PRUNE_BATCH:
        pass


async def run(ctx: SessionContext, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            now = utcnow()
            await suspend_idle(ctx, now)
            await prune(ctx, now)
        except Exception as error:
            log.warning("session upkeep failed (%s); will retry", error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ctx.settings.idle_sweep_interval_seconds)
