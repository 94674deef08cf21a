"""Session events on JetStream: one per change, staged in the change's transaction, in the one shape
live push and audit read (``contracts.session``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats as nats_client
import orjson
import pytest

from contracts import session as api
from contracts import subjects
from contracts.events import Event
from tests.session.helpers import User, call, create, events_on, new_user, session_events
from tests.support import Gateway, NatsServer


async def _eventually(nats: NatsServer, session_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        events = await session_events(nats.url, session_id)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.05)


def _assert_shape(event: dict[str, Any], type_: str, user: User, session: dict[str, Any]) -> None:
    Event.model_validate(event)
    assert event["type"] == type_
    assert event["tenant_id"] == user.tenant_id
    assert event["target"] == f"session:{session['id']}"
    assert event["actor"]["kind"] == "human" and event["actor"]["user_id"] == user.id
    assert event["outcome"] == "success"
    assert event["data"] == {"user_id": user.id, "session": session}
    api.SessionEventData.model_validate(event["data"])


def test_the_four_event_types_are_exported() -> None:
    assert api.EVENT_TYPES == ("session.created", "session.updated", "session.forked", "session.deleted")


async def test_each_change_lands_on_jetstream_in_the_shape_live_push_reads(system: Gateway, nats: NatsServer) -> None:
    user = await new_user(system)
    created = await create(system, user, "evented")
    path = f"/sessions/{created['id']}"
    nc = await nats_client.connect(nats.url)
    try:
        message = await nc.jetstream().get_last_msg(subjects.EVENTS_STREAM, "evt.session.created")
    finally:
        await nc.close()
    last = orjson.loads(message.data or b"")
    _assert_shape(last, "session.created", user, created)
    assert (message.headers or {})["Nats-Msg-Id"] == last["id"], "JetStream deduplicates re-publishes by event id"

    status, body, _ = await call(system, "PATCH", path, user, {"name": "renamed", "status": "suspended"})
    updated = body["data"]
    status, body, _ = await call(system, "POST", f"{path}/fork", user)
    forked = body["data"]
    status, body, _ = await call(system, "POST", f"{path}/touch", user)
    last_state = body["data"]
    assert (await call(system, "DELETE", path, user))[0] == 204

    events = await _eventually(nats, created["id"], 3)
    assert [e["type"] for e in events] == ["session.created", "session.updated", "session.deleted"]
    _assert_shape(events[1], "session.updated", user, updated)
    _assert_shape(events[2], "session.deleted", user, last_state)  # its last state, touch included
    (fork_event,) = await _eventually(nats, forked["id"], 1)
    _assert_shape(fork_event, "session.forked", user, forked)
    assert fork_event["data"]["session"]["parent_session_id"] == created["id"]
    assert len({e["id"] for e in [*events, fork_event]}) == 4


@pytest.mark.parametrize("session_overrides", [{"max_active_sessions_per_user": 1}])
async def test_a_refused_change_publishes_nothing(
    system: Gateway, nats: NatsServer, session_overrides: dict[str, Any]
) -> None:
    user = await new_user(system)
    session = await create(system, user)
    path = f"/sessions/{session['id']}"
    refused = [
        await call(system, "PATCH", path, user, {"name": "stale"}, {"If-Match": '"9"'}),
        await call(system, "POST", f"{path}/fork", user),
        await call(system, "POST", "/sessions", user, {"name": "over the quota"}),
        await call(system, "PATCH", path, user, {"status": "bogus"}),
    ]
    assert [status for status, _, _ in refused] == [412, 409, 409, 422]
    assert (await call(system, "PATCH", path, user, {"status": "terminated"}))[0] == 200
    assert (await call(system, "PATCH", path, user, {"status": "active"}))[0] == 409
    await asyncio.sleep(0.3)
    events = await session_events(nats.url, session["id"])
    assert [e["type"] for e in events] == ["session.created", "session.updated"]
    all_created = [e for e, _ in await events_on(nats.url, "evt.session.created") if e["data"]["user_id"] == user.id]
    assert len(all_created) == 1
