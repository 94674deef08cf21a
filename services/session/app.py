"""Composition of the session service: its collaborators, wired onto the shared service runtime."""

from __future__ import annotations

from services.session import repository as repo
from services.session import sweep
from services.session.context import SessionContext
from services.session.handlers import register_consumers, register_handlers
from services.session.settings import SessionSettings
from shared.outbox import Outbox
from shared.service import Register, ServiceContext

SERVICE = "session"


def build(settings: SessionSettings) -> Register:
    """The registration function the service runtime calls with its context."""

    def register(ctx: ServiceContext) -> None:
        outbox = Outbox(ctx.store, repo.OUTBOX, ctx.broker, dead_letters=repo.OUTBOX_DEAD_LETTER)
        sessions = SessionContext(store=ctx.store, outbox=outbox, settings=settings)
        register_handlers(ctx.dispatcher, sessions, concurrency=settings.handler_concurrency)
        register_consumers(ctx.broker, sessions)
        ctx.components["session"] = sessions
        ctx.background.append(outbox.run)
        ctx.background.append(lambda stop: sweep.run(sessions, stop))

    return register
