"""Bus handlers of the audit service: the queries, each a use case on the dispatcher (the event feed
is ``appender``, a raw pull consumer)."""

from __future__ import annotations

from contracts import audit as api
from contracts import subjects
from contracts.identity import BusRequest
from services.audit import queries, verification
from services.audit.context import AuditContext
from shared.dispatch import Dispatcher, Handler, bind


def handler_table(ctx: AuditContext) -> list[tuple[str, type[BusRequest], Handler]]:
    return [
        (api.LIST_EVENTS, api.ListAuditEvents, bind(ctx, queries.list_events)),
        (api.VERIFY, api.VerifyAudit, bind(ctx, verification.verify)),
        (api.EXPORT_PAGE, api.ExportPage, bind(ctx, queries.export_page)),
        (api.GET_KEYS, api.GetAuditKeys, bind(ctx, queries.keys)),
    ]


def register_handlers(dispatcher: Dispatcher, ctx: AuditContext, *, concurrency: int) -> None:
    queue = subjects.queue_group(api.SERVICE)
    for subject, model, use_case in handler_table(ctx):
        dispatcher.add(subject, model, use_case, queue=queue, max_workers=concurrency)
