"""The audit trail: listing, verification, the NDJSON export (streamed page by page from the service,
never held whole in memory) and the public keys that sign checkpoints."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from contracts import audit
from services.gateway.deps import send
from services.gateway.edge import REQUEST_ID, REQUEST_ID_HEADER
from services.gateway.http import ApiError, json_response, ok
from services.gateway.routing import Route

log = logging.getLogger(__name__)

EXPORT_PAGE = 1000
# Verify recomputes the whole range in one request: its time grows with the chain, unlike other requests.
VERIFY_TIMEOUT_SECONDS = 120.0


def _query(request: web.Request, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: request.query[name] for name in names if name in request.query}


async def list_events(request: web.Request) -> web.Response:
    query = _query(request, ("since", "until", "type", "actor", "limit", "cursor"))
    return ok(await send(request, audit.LIST_EVENTS, audit.ListAuditEvents, query))


async def verify(request: web.Request) -> web.Response:
    query = _query(request, ("from_seq", "to_seq"))
    return ok(await send(request, audit.VERIFY, audit.VerifyAudit, query, timeout=VERIFY_TIMEOUT_SECONDS))


async def keys(request: web.Request) -> web.Response:
    result = await send(request, audit.GET_KEYS, audit.GetAuditKeys, {})
    return json_response(result, headers={"Cache-Control": "public, max-age=60"})


async def export(request: web.Request) -> web.StreamResponse:
    """Pages of NDJSON from the service, written as they come. The first page is fetched before the
    response starts, so a refusal (403, 503) is still an error envelope; a failure later cuts the
    connection, and the client sees a truncated body rather than a silently short export."""
    kind = request.query.get("kind", "records")

    async def page(after: int) -> dict[str, Any]:
        fields = {"kind": kind, "after_seq": after, "limit": EXPORT_PAGE}
        result: dict[str, Any] = await send(request, audit.EXPORT_PAGE, audit.ExportPage, fields)
        return result

    chunk = await page(0)
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson",
            "Cache-Control": "no-store",
            REQUEST_ID_HEADER: request[REQUEST_ID],
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    while True:
        await response.write(chunk["ndjson"].encode())
        if chunk["next_after_seq"] is None:
            break
        try:
            chunk = await page(int(chunk["next_after_seq"]))
        except ApiError as error:
            log.warning("audit export cut short: %s", error)
            if request.transport is not None:
                request.transport.close()
            return response
    await response.write_eof()
    return response


ROUTES = [
    Route(
        "GET",
        "/audit/events",
        list_events,
        "Audit records, oldest first: admins see their tenant's, members only those about themselves",
        response=audit.AuditPage,
        query=("since", "until", "type", "actor", "limit", "cursor"),
        tag="audit",
    ),
    Route(
        "GET",
        "/audit/verify",
        verify,
        "Recompute the tenant's hash chain over a range and check every signed checkpoint (admins)",
        access="admin",
        response=audit.VerifyResult,
        query=("from_seq", "to_seq"),
        tag="audit",
    ),
    Route(
        "GET",
        "/audit/export",
        export,
        "The tenant's records as NDJSON in sequence order, streamed (admins); ?kind=checkpoints for its "
        "signed checkpoints",
        access="admin",
        response=audit.AuditRecord,
        enveloped=False,
        media_type="application/x-ndjson",
        query=("kind",),
        tag="audit",
        description="One record per line, not enveloped; verify offline with `python -m services.audit.verify`.",
    ),
    Route(
        "GET",
        "/audit/keys",
        keys,
        "The public keys (JWK set) that sign audit checkpoints; every key ever used stays listed",
        access="public",
        response=audit.AuditKeys,
        enveloped=False,
        tag="audit",
    ),
]
