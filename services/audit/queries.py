"""The read side: listing with filters and cursors, export pages, the public keys.

Who sees what: an admin lists their tenant's chain; a member only records about themselves (the actor
is them, or the target is ``user:<them>``), read through the per-user index. Nobody reads another
tenant's chain: the chain is always the caller's tenant.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import orjson

from contracts import audit as api
from contracts.envelope import ErrorCode
from contracts.identity import BusRequest, Caller
from services.audit import repository as repo
from services.audit.chain import timestamp
from services.audit.context import AuditContext
from shared.cursors import decode_cursor, encode_cursor
from shared.errors import ServiceError, caller_of, forbidden
from shared.store import Transaction

# Records examined per list request, matching or not: a page of a rare filter ends early with a cursor
# instead of scanning a whole chain in one transaction.
SCAN_BUDGET = 5000
_CURSOR_PREFIX = b"audit:"
_INVALID = [{"field": "cursor", "message": "not a cursor this list returned"}]


def chain_of(caller: Caller) -> str:
    return str(caller.tenant_id)


def require_admin(message: BusRequest) -> Caller:
    caller = caller_of(message)
    if not caller.is_admin:
        raise forbidden("the audit trail's verification and export are for tenant admins")
    return caller


def _cursor_seq(cursor: str | None) -> int:
    if cursor is None:
        return 0
    raw = decode_cursor(cursor, _CURSOR_PREFIX).removeprefix(_CURSOR_PREFIX)
    if not raw.isdigit():
        raise ServiceError(ErrorCode.VALIDATION_FAILED, "the cursor is not valid", _INVALID)
    return int(raw)


def _matches(record: dict[str, Any], query: api.ListAuditEvents, since: str | None, until: str | None) -> bool:
    if query.type is not None:
        wanted = query.type
        if not (record["type"] == wanted or (wanted.endswith(".") and record["type"].startswith(wanted))):
            return False
    if query.actor is not None and record["actor"].get("user_id") != str(query.actor):
        return False
    if since is not None and record["occurred_at"] < since:
        return False
    return not (until is not None and record["occurred_at"] >= until)


def _page(
    tx: Transaction, chain: str, user: str | None, query: api.ListAuditEvents, after: int
) -> tuple[list[dict[str, Any]], int | None]:
    since = timestamp(query.since) if query.since else None
    until = timestamp(query.until) if query.until else None
    items: list[dict[str, Any]] = []
    scanned = 0
    last = after
    while scanned < SCAN_BUDGET:
        step = min(SCAN_BUDGET - scanned, max(query.limit * 2, 100))
        if user is not None:
            seqs = repo.user_seqs(tx, chain, user, last, step)
            raws = [repo.record_raw(tx, chain, seq) for seq in seqs]
            rows = [(seq, orjson.loads(raw) if raw is not None else None) for seq, raw in zip(seqs, raws, strict=True)]
        else:
            parsed = [orjson.loads(raw) for raw in repo.records(tx, chain, last, step)]
            rows = [(int(record["seq"]), record) for record in parsed]
        for seq, record in rows:
            last = seq
            scanned += 1
            if record is None:
                continue  # an index entry whose record is gone: verify reports that, listing skips it
            if _matches(record, query, since, until):
                items.append(record)
                if len(items) == query.limit:
                    return items, last
        if len(rows) < step:
            return items, None
    return items, last


async def list_events(ctx: AuditContext, message: api.ListAuditEvents) -> dict[str, Any]:
    """The caller's tenant's records (admins) or the records about the caller (members), oldest first."""
    caller = caller_of(message)
    chain = chain_of(caller)
    user = None if caller.is_admin else str(caller.user_id)
    if caller.is_admin and message.actor is not None:
        user = str(message.actor)  # the index finds an actor's records without scanning the chain
    after = _cursor_seq(message.cursor)
    items, last = await ctx.store.run(partial(_page, chain=chain, user=user, query=message, after=after))
    next_cursor = encode_cursor(_CURSOR_PREFIX + str(last).encode()) if last is not None else None
    # Records go out as stored (not re-rendered by the model), so a client can recompute their hashes.
    return {"items": items, "next_cursor": next_cursor}


def _export(tx: Transaction, chain: str, kind: str, after: int, limit: int) -> api.ExportChunk:
    if kind == "checkpoints":
        raws = repo.checkpoints(tx, chain, after, limit)
        seqs = [int(orjson.loads(raw)["seq"]) for raw in raws[-1:]]
    else:
        floor = repo.floor(tx, chain)
        start = max(after, int(floor["seq"]) if floor is not None else 0)
        raws = repo.records(tx, chain, start, limit)
        seqs = [int(orjson.loads(raw)["seq"]) for raw in raws[-1:]]
    text = b"".join(raw + b"\n" for raw in raws).decode()
    return api.ExportChunk(ndjson=text, count=len(raws), next_after_seq=seqs[0] if len(raws) == limit else None)


async def export_page(ctx: AuditContext, message: api.ExportPage) -> api.ExportChunk:
    """One page of the tenant's records (or checkpoints) as NDJSON, in sequence order (admins)."""
    chain = chain_of(require_admin(message))
    return await ctx.store.run(
        partial(_export, chain=chain, kind=message.kind, after=message.after_seq, limit=message.limit)
    )


async def keys(ctx: AuditContext, message: api.GetAuditKeys) -> api.AuditKeys:
    """The public keys that sign checkpoints (a JWK set); every key ever used stays listed."""
    return api.AuditKeys(keys=(await ctx.signer.jwks())["keys"])
