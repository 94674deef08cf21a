"""Bus handlers of the file-event service: each subject validates its message, calls one use case and
replies with the envelope. The file stream is consumed by ``ingest.Ingestor`` (a background job)."""

from __future__ import annotations

from contracts import file_event as api
from contracts import subjects
from contracts.identity import BusRequest
from services.file_event import intake, queries
from services.file_event.context import FilesContext
from shared.dispatch import Dispatcher, Handler, bind


def handler_table(ctx: FilesContext) -> list[tuple[str, type[BusRequest], Handler]]:
    return [
        (api.INGEST, api.IngestFileEvents, bind(ctx, intake.ingest)),
        (api.LIST_EVENTS, api.ListFileEvents, bind(ctx, queries.list_events)),
        (api.LIST_FILES, api.ListFiles, bind(ctx, queries.list_files)),
        (api.HISTORY, api.FileHistory, bind(ctx, queries.history)),
    ]


def register_handlers(dispatcher: Dispatcher, ctx: FilesContext, *, concurrency: int) -> None:
    queue = subjects.queue_group(api.SERVICE)
    for subject, model, use_case in handler_table(ctx):
        dispatcher.add(subject, model, use_case, queue=queue, max_workers=concurrency)
