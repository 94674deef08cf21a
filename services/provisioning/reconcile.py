"""The reconcile loop: on start-up and then periodically, pick up every workspace with work waiting
(left mid-way by a crash once its claim ran out, or a retry that came due), and re-attach the
backend to the ready ones (the local backend's monitors)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from services.provisioning import repository as repo
from services.provisioning.backends import WorkspaceRef
from services.provisioning.context import ProvisioningContext, utcnow
from services.provisioning.states import due
from services.provisioning.workspaces import drive_soon
from shared.bus import EVENTS_MAX_AGE_SECONDS

log = logging.getLogger(__name__)

SCAN_LIMIT = 10_000
PRUNE_BATCH = 500
# A marker must outlive every redelivery of its event: the stream keeps events this long (plus a day).
MARKER_TTL = timedelta(seconds=EVENTS_MAX_AGE_SECONDS) + timedelta(days=1)


async def prune_markers(ctx: ProvisioningContext) -> int:
    before = utcnow() - MARKER_TTL
    total = 0
    while (pruned := await ctx.store.run(lambda tx: repo.prune_processed(tx, before, PRUNE_BATCH))) == PRUNE_BATCH:
        total += pruned
    return total + pruned


async def attach_ready(ctx: ProvisioningContext) -> int:
    ready = await ctx.store.run(lambda tx: repo.ready(tx, SCAN_LIMIT))
    await ctx.backend.attach([WorkspaceRef(tenant_id=r.tenant_id, user_id=r.user_id) for r in ready])
    return len(ready)


async def reconcile_once(ctx: ProvisioningContext) -> int:
    """Start work on every due workspace; returns how many."""
    working = await ctx.store.run(lambda tx: repo.working(tx, SCAN_LIMIT))
    now = utcnow()
    started = 0
    for record in working:
        if due(record, now):
            drive_soon(ctx, record.tenant_id, record.user_id)
            started += 1
    return started


async def run(ctx: ProvisioningContext, stop: asyncio.Event) -> None:
    attached = False
    while not stop.is_set():
        try:
            if not attached:
                count = await attach_ready(ctx)
                attached = True
                if count:
                    log.info("re-attached %d ready workspaces", count)
            await reconcile_once(ctx)
            await prune_markers(ctx)
        except Exception as error:
            log.warning("reconcile pass failed (%s); will retry", error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ctx.settings.provisioning_reconcile_interval_seconds)
