"""Retention: records older than the configured age are pruned down to a checkpoint, which stays as the
chain's anchor (its floor), so what remains still verifies from a signed hash."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from functools import partial

import orjson

from services.audit import repository as repo
from services.audit.checkpoints import all_chains
from services.audit.context import AuditContext
from shared.store import Transaction

log = logging.getLogger(__name__)


def _prunable(tx: Transaction, chain: str, cutoff: str) -> list[dict[str, object]]:
    """Checkpoints above the floor whose record was recorded before the cutoff, in order."""
    current = repo.floor(tx, chain)
    after = int(current["seq"]) if current is not None else 0
    found = []
    for checkpoint in repo.checkpoints_between(tx, chain, after, 2**62):
        raw = repo.record_raw(tx, chain, int(checkpoint["seq"]))
        if raw is None or orjson.loads(raw)["recorded_at"] >= cutoff:
            break
        found.append(checkpoint)
    return found


async def prune_chain(ctx: AuditContext, chain: str, older_than: datetime) -> int:
    """Prune one chain up to its newest checkpoint recorded before ``older_than``; returns records removed."""
    cutoff = older_than.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    anchors = await ctx.store.run(partial(_prunable, chain=chain, cutoff=cutoff))
    removed = 0
    for anchor in anchors:  # one checkpoint span per transaction
        removed += await ctx.store.run(partial(repo.prune_step, chain=chain, anchor=anchor))
    return removed


async def prune_all(ctx: AuditContext, older_than: datetime) -> int:
    removed = 0
    for chain in await all_chains(ctx):
        removed += await prune_chain(ctx, chain, older_than)
    return removed


async def run(ctx: AuditContext, stop: asyncio.Event) -> None:
    days = ctx.settings.audit_retention_days
    if days is None:
        return
    while not stop.is_set():
        try:
            removed = await prune_all(ctx, datetime.now(UTC) - timedelta(days=days))
            if removed:
                log.info("audit retention pruned %d records older than %g days", removed, days)
        except Exception as error:
            log.warning("audit retention could not prune (%s); next round", error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ctx.settings.audit_retention_sweep_seconds)
