"""Bus handlers of the provisioning service: the two client operations, and one durable JetStream
consumer of the auth events that create and remove workspaces."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.js import JetStreamContext
from nats.js.api import AckPolicy as ConsumerAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError
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


def auth_consumer_config() -> ConsumerConfig:
    """The durable over exactly the three auth subjects (several filters: one consumer, so stream order
    between a registration and the removal that undoes it is kept, and no login event is delivered)."""
    return ConsumerConfig(
        name=AUTH_EVENTS_DURABLE,
        durable_name=AUTH_EVENTS_DURABLE,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=ConsumerAckPolicy.EXPLICIT,
        filter_subjects=list(AUTH_SUBJECTS),
    )


async def ensure_auth_consumer(js: JetStreamContext) -> None:
    """Create the durable, or narrow one made before to ``evt.auth.*`` (a filter change keeps its
    acknowledged position): FastStream's subscriber declares one filter only, and left to it every
    login would be delivered here to be acknowledged and dropped."""
    try:
        info = await js.consumer_info(subjects.EVENTS_STREAM, AUTH_EVENTS_DURABLE)
    except NotFoundError:
        info = None
    if info is not None:
        current = info.config.filter_subjects or [info.config.filter_subject]
        if sorted(s for s in current if s) == sorted(AUTH_SUBJECTS):
            return
    with contextlib.suppress(BadRequestError):  # another replica made or narrowed it just now
        await js.add_consumer(subjects.EVENTS_STREAM, config=auth_consumer_config())


def register_consumers(broker: NatsBroker, ctx: ProvisioningContext) -> None:
    """One durable pull consumer over the three auth subjects (``ensure_auth_consumer`` makes it before
    the subscriber starts), shared by the replicas. An event is acknowledged once its transaction
    committed (the work itself runs after, under a claim), or when it cannot be read; a failure brings
    it back later."""
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
