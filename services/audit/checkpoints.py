"""Signed checkpoints: every N records or T seconds each grown chain's head is signed, stored, and
published on ``auditcp.<tenant>`` (a stream that denies delete and purge), so a rewrite of the store
alone cannot hide a rewrite of the chain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from functools import partial
from typing import Any

from contracts import subjects
from services.audit import repository as repo
from services.audit.chain import canonical
from services.audit.context import AuditContext
from shared.store import Transaction

log = logging.getLogger(__name__)

_PAGE = 200


def _checkpoint(tx: Transaction, ctx: AuditContext, chain: str) -> dict[str, Any] | None:
    head = repo.head(tx, chain)
    if head.seq <= repo.last_checkpoint_seq(tx, chain):
        return None
    checkpoint = ctx.signer.sign(chain, head.seq, head.hash, datetime.now(UTC))
    repo.put_checkpoint(tx, checkpoint)
    return checkpoint


async def checkpoint_chain(ctx: AuditContext, chain: str) -> dict[str, Any] | None:
    """Sign the chain's head if it grew since its last checkpoint."""
    await ctx.signer.keys()
    return await ctx.store.run(partial(_checkpoint, ctx=ctx, chain=chain))


async def all_chains(ctx: AuditContext) -> list[str]:
    found: list[str] = []
    after: str | None = None
    while True:
        page = await ctx.store.run(partial(repo.chains, after=after, limit=_PAGE))
        found += [chain for chain, _ in page]
        if len(page) < _PAGE:
            return found
        after = page[-1][0]


async def publish_pending(ctx: AuditContext) -> int:
    """Publish stored checkpoints not yet on the stream (``Nats-Msg-Id`` makes a repeat a no-op)."""
    js = ctx.js
    if js is None:
        return 0
    sent = 0
    while True:
        pending = await ctx.store.run(partial(repo.pending_checkpoints, limit=_PAGE))
        for checkpoint in pending:
            chain, seq = checkpoint["tenant_id"], int(checkpoint["seq"])
            await js.publish(
                subjects.audit_checkpoint_subject(chain),
                canonical(checkpoint),
                stream=subjects.AUDIT_CHECKPOINTS_STREAM,
                headers={"Nats-Msg-Id": f"{chain}:{seq}"},
                timeout=5.0,
            )
            await ctx.store.run(partial(repo.published, chain=chain, seq=seq))
            sent += 1
        if len(pending) < _PAGE:
            return sent


async def checkpoint_dirty(ctx: AuditContext) -> None:
    chains, ctx.dirty = ctx.dirty, set()
    for chain in sorted(chains):
        try:
            await checkpoint_chain(ctx, chain)
        except Exception as error:
            ctx.dirty.add(chain)
            log.warning("audit could not checkpoint chain %s (%s); next round", chain, error)


async def run(ctx: AuditContext, stop: asyncio.Event) -> None:
    """Checkpoint grown chains on the count trigger or the interval; publish what is pending."""
    first = True
    while not stop.is_set():
        try:
            if first:
                ctx.dirty |= set(await all_chains(ctx))  # the counts of a previous process are gone
                first = False
            await checkpoint_dirty(ctx)
            await publish_pending(ctx)
        except Exception as error:
            log.warning("audit checkpoints: %s; retrying", error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.checkpoint_now.wait(), ctx.settings.audit_checkpoint_interval_seconds)
        ctx.checkpoint_now.clear()
