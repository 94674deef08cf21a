"""Creates that arrive together are committed in one transaction (``creates.CreateBatcher``), each
still answered, announced and traced as its own request."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from services.session.context import SessionContext
from tests.session.helpers import User, call, events_on, new_user
from tests.support import Gateway, NatsServer


async def test_concurrent_creates_share_transactions_and_keep_their_own_events(
    system: Gateway, nats: NatsServer
) -> None:
    users = [await new_user(system) for _ in range(4)]
    ctx = cast(SessionContext, system.services["session"].ctx.components["session"])
    before = ctx.creates.transactions

    async def create(user: User, i: int) -> tuple[User, dict[str, Any], str]:
        status, body, headers = await call(system, "POST", "/sessions", user, {"name": f"together {i}"})
        assert status == 201, body
        return user, body["data"], headers["X-Request-ID"]

    created = await asyncio.gather(*(create(users[i % 4], i) for i in range(24)))
    assert ctx.creates.transactions - before < 24, "creates that arrived together shared transactions"

    events = {e["target"].removeprefix("session:"): e for e, _ in await events_on(nats.url, "evt.session.created")}
    for user, session, request_id in created:
        event = events[session["id"]]
        assert event["data"]["session"] == session
        assert event["actor"]["user_id"] == user.id and event["tenant_id"] == user.tenant_id
        assert event["trace_id"] == request_id.replace("-", ""), "the request's own trace, not the batch's"
    for user in users:
        status, body, _ = await call(system, "GET", "/sessions", user, limit=100)
        assert status == 200 and len(body["data"]["items"]) == 6
