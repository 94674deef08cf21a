"""Bus handlers of the provisioning service: the two client operations, and one durable JetStream
consumer of the auth events that create and remove workspaces."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from pydantic import ValidationError

from contracts import auth, subjects
from contracts import provisioning as api
from contracts.events import Event
from contracts.identity import BusRequest
from services.provisioning import workspaces
from services.provisioning.context import ProvisioningContext
from shared.dispatch import Dispatcher, Handler, bind

log = logging.getLogger(__name__)

AUTH_EVENTS_DURABLE = "provisioning-auth-events"
# A message whose handling failed (the store is down) comes back after this, not in a tight loop.
REDELIVER_AFTER_SECONDS = 2.0


def _subject(event_type: str) -> str:
    return subjects.event(*event_type.split(".", 1))


AUTH_SUBJECTS = tuple(_subject(t) for t in (auth.USER_REGISTERED, auth.USER_REMOVED, auth.TENANT_DELETED))


def handler_table(ctx: ProvisioningContext) -> list[tuple[str, type[BusRequest], Handler]]:
    return [
        (api.GET, api.GetWorkspace, bind(ctx, workspaces.get)),
        (api.REPROVISION, api.ReprovisionWorkspace, bind(ctx, workspaces.reprovision)),
    ]


def register_handlers(dispatcher: Dispatcher, ctx: ProvisioningContext) -> None:
    queue = subjects.queue_group(api.SERVICE)
    for subject, model, use_case in handler_table(ctx):
        dispatcher.add(subject, model, use_case, queue=queue, max_workers=8)


def event_handlers(ctx: ProvisioningContext) -> dict[str, Callable[[Event], Awaitable[Any]]]:
    handlers: dict[str, Callable[[Event], Awaitable[Any]]] = {
        auth.USER_REMOVED: lambda e: workspaces.on_user_removed(ctx, e),
        auth.TENANT_DELETED: lambda e: workspaces.on_tenant_deleted(ctx, e),
    }
    if ctx.settings.provisioning_on_register:
        handlers[auth.USER_REGISTERED] = lambda e: workspaces.on_user_registered(ctx, e)
    return handlers


def register_consumers(broker: NatsBroker, ctx: ProvisioningContext) -> None:
    """One durable pull consumer over the three auth subjects, shared by the replicas. An event is
    acknowledged once its transaction committed (the work itself runs after, under a claim), or when
    it cannot be read; a failure brings it back later."""
    handlers = event_handlers(ctx)

    @broker.subscriber(
        subjects.event("auth", "*"),
        stream=JStream(subjects.EVENTS_STREAM, declare=False),
        durable=AUTH_EVENTS_DURABLE,
        pull_sub=PullSub(batch_size=16, timeout=1.0),
        ack_policy=AckPolicy.MANUAL,
        title=f"auth events:{AUTH_EVENTS_DURABLE}",
    )
    async def on_auth_event(body: Any, message: NatsMessage) -> None:
        """A user registered or added (a workspace is requested), removed, or a tenant deleted (removed)."""
        try:
            event = Event.model_validate(body)
        except ValidationError:
            log.error("a message on %s is not an event; dropped", message.raw_message.subject)
            await message.ack()
            return
        handle = handlers.get(event.type)
        if handle is None:
            await message.ack()
            return
        try:
            await handle(event)
        except Exception as error:
            log.warning("%s event %s not handled (%s); it comes back later", event.type, event.id, error)
            await message.nack(delay=REDELIVER_AFTER_SECONDS)
            return
        await message.ack()
