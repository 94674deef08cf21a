"""The active-session quota: creating, forking and resuming beyond it is 409
``SESSION_QUOTA_EXCEEDED``; suspended and terminated sessions do not count; it holds under races."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

import pytest

from contracts import session as api
from contracts.identity import Caller
from services.session import repository as repo
from services.session import rules
from services.session.context import SessionContext, session_event, system_actor, utcnow
from services.session.creates import CreateBatcher
from shared.errors import ServiceError
from shared.outbox import Outbox
from shared.store import Store
from tests.session.helpers import Gate, call, create, list_all, new_user
from tests.support import Gateway

pytestmark = pytest.mark.parametrize("session_overrides", [{"max_active_sessions_per_user": 3}])


async def test_creating_forking_and_resuming_beyond_the_quota_is_409(
    system: Gateway, session_overrides: dict[str, Any]
) -> None:
    user = await new_user(system)
    sessions = [await create(system, user, f"s{i}") for i in range(3)]
    status, body, _ = await call(system, "POST", "/sessions", user, {"name": "one too many"})
    assert (status, body["error"]["code"]) == (409, "SESSION_QUOTA_EXCEEDED")
    assert body["error"]["details"] == {"max_active_sessions": 3}
    status, body, _ = await call(system, "POST", f"/sessions/{sessions[0]['id']}/fork", user)
    assert (status, body["error"]["code"]) == (409, "SESSION_QUOTA_EXCEEDED")

    # A suspended session frees a place; resuming it while the place is taken again is refused.
    assert (await call(system, "PATCH", f"/sessions/{sessions[0]['id']}", user, {"status": "suspended"}))[0] == 200
    forked = (await call(system, "POST", f"/sessions/{sessions[1]['id']}/fork", user))[1]["data"]
    status, body, _ = await call(system, "PATCH", f"/sessions/{sessions[0]['id']}", user, {"status": "active"})
    assert (status, body["error"]["code"]) == (409, "SESSION_QUOTA_EXCEEDED")
    status, body, _ = await call(system, "GET", f"/sessions/{sessions[0]['id']}", user)
    assert (body["data"]["status"], body["data"]["version"]) == ("suspended", 2)

    # Terminating and deleting free places too; the quota is per user.
    assert (await call(system, "PATCH", f"/sessions/{forked['id']}", user, {"status": "terminated"}))[0] == 200
    assert (await call(system, "PATCH", f"/sessions/{sessions[0]['id']}", user, {"status": "active"}))[0] == 200
    assert (await call(system, "DELETE", f"/sessions/{sessions[1]['id']}", user))[0] == 204
    await create(system, user, "after a delete")
    other = await new_user(system)
    for i in range(3):
        await create(system, other, f"other {i}")
    assert len(await list_all(system, user, status="active")) == 3


async def test_concurrent_creates_never_pass_the_quota(system: Gateway, session_overrides: dict[str, Any]) -> None:
    user = await new_user(system)
    results = await asyncio.gather(*(call(system, "POST", "/sessions", user, {"name": f"racer {i}"}) for i in range(8)))
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [201] * 3 + [409] * 5, statuses
    assert len(await list_all(system, user, status="active")) == 3


async def test_concurrent_creates_inside_the_service_never_pass_the_quota(
    system: Gateway, session_overrides: dict[str, Any]
) -> None:
    """The race of two replicas, each committing a batch of four creates of one user, with both
    transactions held until both have read the user's counter: the loser's batch conflicts, runs
    again and finds the quota full."""
    user = await new_user(system)
    real: SessionContext = system.services["session"].ctx.components["session"]
    gated = Outbox(
        cast(Store, Gate(real.store, parties=2)), repo.OUTBOX, real.outbox.broker, dead_letters=repo.OUTBOX_DEAD_LETTER
    )
    replicas = [CreateBatcher(gated, lambda: 3, 0.5) for _ in range(2)]
    caller = Caller(tenant_id=user.tenant_id, user_id=user.id, session_id=uuid.uuid4())

    async def create_one(i: int) -> str:
        record = rules.new_session(repo.SessionRecord, caller, name=f"racer {i}", workspace_path=None, now=utcnow())
        try:
            await replicas[i % 2].create(record, session_event(api.SESSION_CREATED, record, system_actor()))
        except ServiceError as error:
            return error.code
        return "ok"

    outcomes = sorted(await asyncio.gather(*(create_one(i) for i in range(8))))
    assert outcomes == ["SESSION_QUOTA_EXCEEDED"] * 5 + ["ok"] * 3, outcomes
    assert [replica.transactions for replica in replicas] == [1, 1], "four creates, one transaction each"
