"""``verify``: recompute a tenant's chain over a range and check it against every checkpoint, the ones in
the store and the ones published on the checkpoint stream (which a store-writer cannot rewrite)."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import orjson
from nats.js.errors import NotFoundError

from contracts import audit as api
from contracts import subjects
from contracts.envelope import ErrorCode
from services.audit import repository as repo
from services.audit.chain import ChainVerifier, public_keys
from services.audit.context import AuditContext
from services.audit.queries import chain_of, require_admin
from shared.errors import ServiceError
from shared.store import Transaction

log = logging.getLogger(__name__)

PAGE = 1000


async def published_checkpoints(ctx: AuditContext, chain: str) -> list[dict[str, Any]]:
    """Every checkpoint of the chain on the stream, oldest first."""
    js = ctx.js
    if js is None:
        raise ServiceError(ErrorCode.SERVICE_UNAVAILABLE, "the checkpoint stream cannot be read")
    found: list[dict[str, Any]] = []
    seq = 1
    subject = subjects.audit_checkpoint_subject(chain)
    while True:
        try:
            message = await js.get_msg(subjects.AUDIT_CHECKPOINTS_STREAM, seq, subject=subject, next=True)
        except NotFoundError:
            return found
        if message.data:
            try:
                found.append(dict(orjson.loads(message.data)))
            except orjson.JSONDecodeError:
                log.error("checkpoint stream message %s is not JSON", message.seq)
        seq = int(message.seq or seq) + 1


def _bounds(tx: Transaction, chain: str) -> tuple[repo.Head, dict[str, Any] | None, list[dict[str, Any]]]:
    stored = [dict(orjson.loads(raw)) for raw in repo.checkpoints(tx, chain, 0, 0)]
    return repo.head(tx, chain), repo.floor(tx, chain), stored


async def verify(ctx: AuditContext, message: api.VerifyAudit) -> api.VerifyResult:
    """Recompute the hashes from ``from_seq`` to ``to_seq`` and check the signed checkpoints (admins)."""
    chain = chain_of(require_admin(message))
    head, floor, stored = await ctx.store.run(partial(_bounds, chain=chain))
    published = await published_checkpoints(ctx, chain)
    keys = public_keys(await ctx.signer.jwks())
    floor_seq = int(floor["seq"]) if floor is not None else 0
    top = max([head.seq, *(int(c["seq"]) for c in published)])
    low = max(message.from_seq or 1, floor_seq + 1)
    high = min(message.to_seq, top) if message.to_seq is not None else top
    checkpoints = [c for c in [*stored, *published] if low - 1 <= int(c["seq"]) <= high]
    prev_hash: str | None = None
    if low > floor_seq + 1:
        raw = await ctx.store.run(partial(repo.record_raw, chain=chain, seq=low - 1))
        prev_hash = str(orjson.loads(raw)["hash"]) if raw is not None else ""
    elif floor is not None:
        checkpoints.append(floor)  # the anchor of a pruned chain
    verifier = ChainVerifier(tenant_id=chain, keys=keys, checkpoints=checkpoints, prev_hash=prev_hash, start_seq=low)
    after = low - 1
    while after < high:
        raws = await ctx.store.run(partial(repo.records, chain=chain, after_seq=after, limit=PAGE, through_seq=high))
        if not raws:
            break
        if not all(verifier.feed(orjson.loads(raw)) for raw in raws):
            break
        after = int(orjson.loads(raws[-1])["seq"])
    result = verifier.finish()
    if result.ok and (result.head_seq or low - 1) < min(high, head.seq):
        result.ok, result.first_bad_seq = False, (result.head_seq or low - 1) + 1
        result.reason = f"the chain ends at seq {result.first_bad_seq - 1}, but its head says seq {head.seq}"
    return api.VerifyResult(
        ok=result.ok,
        checked=result.checked,
        head=api.ChainHead(seq=head.seq, hash=head.hash) if head.seq else None,
        first_bad_seq=result.first_bad_seq,
        reason=result.reason,
        checkpoints_checked=result.checkpoints_checked,
    )
