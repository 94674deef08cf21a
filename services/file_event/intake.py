"""``POST /files/events``: a client's changes onto the file stream, on the caller's own workspace subject,
so they are stored by the same consumer as a monitor's (one path into the store, one set of rules)."""

from __future__ import annotations

import asyncio
from typing import Any

from contracts import file_event as api
from contracts.envelope import ErrorCode
from contracts.provisioning import workspace_id
from contracts.subjects import FILE_EVENTS_STREAM, file_subject
from services.file_event.context import FilesContext
from shared.errors import ServiceError, caller_of

PUBLISH_TIMEOUT_SECONDS = 5.0


async def ingest(ctx: FilesContext, message: api.IngestFileEvents) -> api.Accepted:
    """Take a client's file changes (the request was validated whole: one bad event is a 422 naming it)."""
    caller = caller_of(message)
    subject = file_subject(caller.tenant_id, caller.user_id, workspace_id(caller.tenant_id, caller.user_id))
    unique = {change.event_id: change for change in reversed(message.events)}  # the first of a duplicate wins
    js = ctx.js
    acks: list[asyncio.Future[Any]] = []
    try:
        for event_id, change in reversed(unique.items()):
            body = change.model_dump_json(exclude_none=True).encode()
            headers = {"Nats-Msg-Id": str(event_id)}
            acks.append(
                await js.publish_async(
                    subject, body, wait_stall=PUBLISH_TIMEOUT_SECONDS, stream=FILE_EVENTS_STREAM, headers=headers
                )
            )
        await asyncio.wait_for(asyncio.gather(*acks), PUBLISH_TIMEOUT_SECONDS)
    except Exception as error:
        for ack in acks:  # an ack that never comes must not hold the client's in-flight slots
            ack.cancel()
        raise ServiceError(
            ErrorCode.SERVICE_UNAVAILABLE, f"the file-event stream did not take the events ({type(error).__name__})"
        ) from error
    return api.Accepted(accepted=len(unique))
