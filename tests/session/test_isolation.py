"""One rule on every route: a session that is not the caller's own (another user's in the same
tenant, even for an admin, or another tenant's) is 404, and nothing about it changes."""

from __future__ import annotations

import pytest

from tests.session.helpers import User, call, create, list_all, member_of, new_user
from tests.support import Gateway

ROUTES = [
    ("GET", "", None),
    ("PATCH", "", {"name": "taken over"}),
    ("PATCH", "", {"status": "terminated"}),
    ("POST", "/touch", {}),
    ("POST", "/fork", {}),
    ("DELETE", "", None),
]


async def _every_route_is_404(system: Gateway, intruder: User, session_id: str) -> None:
    for method, suffix, body in ROUTES:
        status, reply, _ = await call(system, method, f"/sessions/{session_id}{suffix}", intruder, body)
        assert (status, reply["error"]["code"]) == (404, "NOT_FOUND"), (method, suffix)
        assert session_id not in str(reply)


@pytest.mark.parametrize("relation", ["member of the same tenant", "admin of the same tenant", "another tenant"])
async def test_someone_elses_session_is_404_on_every_route(system: Gateway, relation: str) -> None:
    admin = await new_user(system)
    owner = await member_of(system, admin)
    intruder = {
        "member of the same tenant": lambda: member_of(system, admin),
        "admin of the same tenant": lambda: member_of(system, admin, role="admin"),
        "another tenant": lambda: new_user(system),
    }[relation]
    other = await intruder()
    session = await create(system, owner, "private")
    await _every_route_is_404(system, other, session["id"])
    status, body, _ = await call(system, "GET", f"/sessions/{session['id']}", owner)
    assert (status, body["data"]) == (200, session), "the owner's session is as it was"
    assert await list_all(system, other) == []
    assert [s["id"] for s in await list_all(system, owner)] == [session["id"]]
