"""Bus handlers of the session service: each subject validates its message, calls one use case and
replies with the envelope (``shared.bus.replies``). The table is the whole mapping; the auth events
that end sessions come in through one durable JetStream consumer."""

from __future__ import annotations

import logging
from typing import Any

from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from pydantic import ValidationError

from contracts import auth, subjects
from contracts import session as api
from contracts.events import Event
from contracts.identity import BusRequest
from services.session import sessions, terminations
from services.session.context import SessionContext
from shared.dispatch import Dispatcher, Handler, bind

log = logging.getLogger(__name__)


AUTH_EVENTS_DURABLE = "session-auth-events"
# A message whose handling failed (the store is down) comes back after this, not in a tight loop.
REDELIVER_AFTER_SECONDS = 2.0


def handler_table(ctx: SessionContext) -> list[tuple[str, type[BusRequest], Handler]]:
    return [
        (api.CREATE, api.CreateSession, bind(ctx, sessions.create)),
        (api.LIST, api.ListSessions, bind(ctx, sessions.list_sessions)),
        (api.GET, api.GetSession, bind(ctx, sessions.get)),
        (api.UPDATE, api.UpdateSession, bind(ctx, sessions.update)),
        (api.DELETE, api.DeleteSession, bind(ctx, sessions.delete)),
        (api.FORK, api.ForkSession, bind(ctx, sessions.fork)),
        (api.TOUCH, api.TouchSession, bind(ctx, sessions.touch)),
    ]


def register_handlers(dispatcher: Dispatcher, ctx: SessionContext, *, concurrency: int) -> None:
    """Subscribe every use case; each handles up to ``concurrency`` messages at once (they wait on the store)."""
    queue = subjects.queue_group(api.SERVICE)
    for subject, model, use_case in handler_table(ctx):
        dispatcher.add(subject, model, use_case, queue=queue, max_workers=concurrency)


def register_consumers(broker: NatsBroker, ctx: SessionContext) -> None:
    """The durable consumer of ``auth.logout`` (shared by the replicas: a pull consumer). An event is
    acknowledged once handled, or when it cannot be read; a failure brings it back later."""

    @broker.subscriber(
        auth.LOGOUT_SUBJECT,
        stream=JStream(subjects.EVENTS_STREAM, declare=False),
        durable=AUTH_EVENTS_DURABLE,
        pull_sub=PullSub(batch_size=16, timeout=1.0),
        ack_policy=AckPolicy.MANUAL,
        title=f"{auth.LOGOUT_SUBJECT}:{AUTH_EVENTS_DURABLE}",
    )
    async def on_auth_logout(body: Any, message: NatsMessage) -> None:
        """A user who logged out of every device: their workspace sessions end."""
        try:
            event = Event.model_validate(body)
        except ValidationError:
            log.error("a message on %s is not an event; dropped", auth.LOGOUT_SUBJECT)
            await message.ack()
            return
        try:
            await terminations.on_auth_logout(ctx, event)
        except Exception as error:
            log.warning("auth.logout event %s not handled (%s); it comes back later", event.id, error)
            await message.nack(delay=REDELIVER_AFTER_SECONDS)
            return
        await message.ack()
