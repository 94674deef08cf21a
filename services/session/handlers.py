"""Bus handlers of the session service: each subject validates its message, calls one use case and
replies with the envelope (``shared.bus.replies``). The table is the whole mapping; the auth events
that end sessions come in through durable JetStream consumers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
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


AUTH_EVENTS_DURABLE = "session-auth-events"  # auth.logout (the name it has always had)
USER_REMOVED_DURABLE = "session-auth-user-removed"
TENANT_DELETED_DURABLE = "session-auth-tenant-deleted"
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
    """The durable consumers of the auth events that end sessions, one durable per event type (shared
    by the replicas: pull consumers). Separate durables rather than one with several filter subjects:
    ``session-auth-events`` keeps its filter, so a stream that already has it needs no change, and a
    backlog of one type never holds up another. An event is acknowledged once handled, or when it
    cannot be read; a failure brings it back later."""
    for subject, durable, use_case in TERMINATIONS:
        _consume(broker, ctx, subject, durable, use_case)


Termination = Callable[[SessionContext, Event], Awaitable[int]]

TERMINATIONS: list[tuple[str, str, Termination]] = [
    (auth.LOGOUT_SUBJECT, AUTH_EVENTS_DURABLE, terminations.on_auth_logout),
    (subjects.event(*auth.USER_REMOVED.split(".", 1)), USER_REMOVED_DURABLE, terminations.on_user_removed),
    (subjects.event(*auth.TENANT_DELETED.split(".", 1)), TENANT_DELETED_DURABLE, terminations.on_tenant_deleted),
]


def _consume(broker: NatsBroker, ctx: SessionContext, subject: str, durable: str, use_case: Termination) -> None:
    @broker.subscriber(
        subject,
        stream=JStream(subjects.EVENTS_STREAM, declare=False),
        durable=durable,
        pull_sub=PullSub(batch_size=16, timeout=1.0),
        ack_policy=AckPolicy.MANUAL,
        title=f"{subject}:{durable}",
    )
    async def on_event(body: Any, message: NatsMessage) -> None:
        try:
            event = Event.model_validate(body)
        except ValidationError:
            log.error("a message on %s is not an event; dropped", subject)
            await message.ack()
            return
        try:
            await use_case(ctx, event)
        except Exception as error:
            log.warning("%s event %s not handled (%s); it comes back later", event.type, event.id, error)
            await message.nack(delay=REDELIVER_AFTER_SECONDS)
            return
        await message.ack()
