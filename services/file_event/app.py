"""Composition of the file-event service: its collaborators, wired onto the shared service runtime."""

from __future__ import annotations

from services.file_event import repository as repo
from services.file_event.context import FilesContext
from services.file_event.handlers import register_handlers
from services.file_event.ingest import Ingestor
from services.file_event.settings import FileEventSettings
from shared.outbox import Outbox
from shared.service import Register, ServiceContext

SERVICE = "file_event"


def build(settings: FileEventSettings) -> Register:
    """The registration function the service runtime calls with its context."""

    def register(ctx: ServiceContext) -> None:
        outbox = Outbox(ctx.store, repo.OUTBOX, ctx.broker, dead_letters=repo.OUTBOX_DEAD_LETTER)
        files = FilesContext(store=ctx.store, outbox=outbox, settings=settings, broker=ctx.broker)
        register_handlers(ctx.dispatcher, files, concurrency=settings.handler_concurrency)
        ingestor = Ingestor(files)
        ctx.components["file_event"] = files
        ctx.components["ingestor"] = ingestor
        ctx.background.append(outbox.run)
        ctx.background.append(ingestor.run)

    return register
