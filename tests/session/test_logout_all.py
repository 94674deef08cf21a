"""A user who logs out of every device ends every workspace session they had: the session service
follows ``auth.logout`` with a durable JetStream consumer, idempotently by event id."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import nats as nats_client

from contracts import auth
from contracts.events import Actor, Event
from services.session import repository as repo
from services.session.app import build
from services.session.context import SessionContext
from services.session.settings import SessionSettings
from shared.store import Store, StoreUnavailable
from tests.auth.helpers import login, post
from tests.conftest import service_env
from tests.session.helpers import User, call, create, member_of, new_user, session_events
from tests.support import Gateway, NatsServer, start_service


async def _statuses(system: Gateway, user: User, sessions: list[dict[str, Any]]) -> list[str]:
    found = []
    for session in sessions:
        status, body, _ = await call(system, "GET", f"/sessions/{session['id']}", user)
        assert status == 200, body
        found.append(body["data"]["status"])
    return found


async def _eventually(check: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def _logged_in_again(system: Gateway, user: User) -> User:
    tokens = await login(system, user.email)
    return User(user.id, user.tenant_id, tokens["access_token"], user.email)


async def _publish(nats: NatsServer, event: Event | bytes, msg_id: str | None = None) -> None:
    """Publish as auth does (or, given bytes, something that is not an event)."""
    nc = await nats_client.connect(nats.url)
    try:
        if isinstance(event, bytes):
            await nc.jetstream().publish(auth.LOGOUT_SUBJECT, event, headers={"Nats-Msg-Id": str(uuid.uuid4())})
            return
        headers = {"Nats-Msg-Id": msg_id or str(event.id)}
        await nc.jetstream().publish(event.subject, event.model_dump_json().encode(), headers=headers)
    finally:
        await nc.close()


def _logout_all(user: User, occurred_at: datetime | None = None, reason: str = "logout_all") -> Event:
    data = auth.LogoutData(user_id=uuid.UUID(user.id), session_ids=[uuid.uuid4()], reason=reason)
    return Event(
        type=auth.LOGOUT_EVENT,
        tenant_id=uuid.UUID(user.tenant_id),
        actor=Actor(kind="human", user_id=uuid.UUID(user.id)),
        occurred_at=occurred_at or datetime.now(UTC),
        data=data.model_dump(mode="json"),
    )


async def _all_handled(system: Gateway, nats: NatsServer) -> None:
    """Wait until the consumer has handled everything published so far: a later logout of a
    marker user (events are handled in stream order) has ended the marker's session."""
    marker = await new_user(system)
    session = await create(system, marker, "marker")
    await _publish(nats, _logout_all(marker))
    await _eventually(lambda: _done(system, marker, [session]))


async def test_logging_out_of_every_device_ends_the_users_sessions(system: Gateway, nats: NatsServer) -> None:
    user = await new_user(system)
    neighbour = await member_of(system, await new_user(system))
    active, suspended, terminated = [await create(system, user, name) for name in ("a", "s", "t")]
    await call(system, "PATCH", f"/sessions/{suspended['id']}", user, {"status": "suspended"})
    await call(system, "PATCH", f"/sessions/{terminated['id']}", user, {"status": "terminated"})
    theirs = await create(system, neighbour, "not theirs to end")

    status, _, _ = await post(system, "/auth/logout", {}, token=(await _logged_in_again(system, user)).token)
    assert status == 204
    await asyncio.sleep(0.5)
    assert await _statuses(system, user, [active, suspended]) == ["active", "suspended"], "one device is not all"

    assert (await post(system, "/auth/logout-all", {}, token=user.token))[0] == 204
    user = await _logged_in_again(system, user)
    sessions = [active, suspended, terminated]
    await _eventually(lambda: _done(system, user, sessions))
    for session in (active, suspended):
        events = await session_events(nats.url, session["id"], "evt.session.updated")
        assert events[-1]["actor"]["kind"] == "system"
        assert events[-1]["data"]["session"]["status"] == "terminated"
    assert len(await session_events(nats.url, terminated["id"], "evt.session.updated")) == 1, "not ended twice"
    assert await _statuses(system, neighbour, [theirs]) == ["active"]
    # Logged in again, the user starts afresh.
    assert (await call(system, "POST", "/sessions", user, {"name": "next day"}))[0] == 201


async def _done(system: Gateway, user: User, sessions: list[dict[str, Any]]) -> bool:
    return set(await _statuses(system, user, sessions)) == {"terminated"}


async def test_a_redelivered_logout_is_handled_once(system: Gateway, nats: NatsServer) -> None:
    user = await new_user(system)
    before = await create(system, user, "before")
    # Dated ahead (auth's clock runs ahead of this one), so only the event id tells a redelivery apart.
    event = _logout_all(user, occurred_at=datetime.now(UTC) + timedelta(minutes=10))
    await _publish(nats, event)
    await _eventually(lambda: _done(system, user, [before]))
    ctx: SessionContext = system.services["session"].ctx.components["session"]
    assert await ctx.store.run(lambda tx: repo.processed(tx, event.id))

    after = await create(system, user, "after")
    await _publish(nats, event, msg_id=f"again-{event.id}")  # as if re-published past the duplicate window
    await _all_handled(system, nats)
    assert await _statuses(system, user, [after]) == ["active"]
    assert len(await session_events(nats.url, before["id"], "evt.session.updated")) == 1


async def test_a_late_logout_ends_only_older_sessions_and_a_device_logout_none(
    system: Gateway, nats: NatsServer
) -> None:
    user = await new_user(system)
    opened = await create(system, user, "opened after the logout happened")
    await _publish(nats, _logout_all(user, occurred_at=datetime.now(UTC) - timedelta(minutes=5)))
    await _publish(nats, _logout_all(user, reason="logout"))
    await _publish(nats, b"not an event")
    await _publish(nats, b'{"type": "auth.logout", "data": {"reason": "logout_all"}}')
    await _all_handled(system, nats)
    assert await _statuses(system, user, [opened]) == ["active"]


async def test_a_logout_while_the_service_is_down_ends_the_sessions_when_it_is_back(
    system: Gateway, nats: NatsServer, tmp_path: Path
) -> None:
    user = await new_user(system)
    session = await create(system, user)
    await system.services["session"].shutdown()
    assert (await post(system, "/auth/logout-all", {}, token=user.token))[0] == 204
    settings = SessionSettings(**service_env(nats.url, tmp_path / "data"))
    again = await start_service("session", settings, build(settings))
    try:
        user = await _logged_in_again(system, user)
        await _eventually(lambda: _done(system, user, [session]))
    finally:
        await again.shutdown()


class _Down:
    """A store that is not answering (the service keeps running)."""

    def __init__(self) -> None:
        self.calls = 0

    async def run(self, fn: object) -> None:
        self.calls += 1
        raise StoreUnavailable("the store is down for this test")


async def test_a_logout_that_fails_to_apply_comes_back_until_it_does(system: Gateway, nats: NatsServer) -> None:
    user = await new_user(system)
    session = await create(system, user)
    ctx: SessionContext = system.services["session"].ctx.components["session"]
    real, down = ctx.store, _Down()
    ctx.store = cast(Store, down)
    try:
        await _publish(nats, _logout_all(user))
        await _eventually(lambda: _true(down.calls > 0))
    finally:
        ctx.store = real
    await _eventually(lambda: _done(system, user, [session]))


async def _true(value: bool) -> bool:
    return value
