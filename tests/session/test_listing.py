"""Listing sessions: most recently accessed first, stable cursors while sessions are touched, the
status filter, and who may list whom."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from services.session import sweep
from services.session.context import SessionContext, utcnow
from tests.session.helpers import call, create, list_all, member_of, new_user
from tests.support import Gateway


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


async def test_the_list_is_most_recently_accessed_first_and_a_touch_moves_a_session_to_the_front(
    system: Gateway,
) -> None:
    user = await new_user(system)
    sessions = [await create(system, user, f"s{i}") for i in range(4)]
    assert ids(await list_all(system, user)) == ids(sessions[::-1])
    status, _, _ = await call(system, "POST", f"/sessions/{sessions[1]['id']}/touch", user)
    assert status == 200
    expected = [sessions[1], sessions[3], sessions[2], sessions[0]]
    assert ids(await list_all(system, user)) == ids(expected)
    # A rename is not an access: the order stays.
    await call(system, "PATCH", f"/sessions/{sessions[0]['id']}", user, {"name": "renamed"})
    assert ids(await list_all(system, user)) == ids(expected)


async def test_three_pages_while_sessions_are_touched_repeat_and_skip_nothing(system: Gateway) -> None:
    user = await new_user(system)
    for i in range(15):
        await create(system, user, f"s{i}")
    before = await list_all(system, user)
    assert len(before) == 15

    async def page(cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        status, body, _ = await call(
            system, "GET", "/sessions", user, limit=5, **({"cursor": cursor} if cursor else {})
        )
        assert status == 200, body
        return body["data"]["items"], body["data"]["next_cursor"]

    async def touch(session_id: str) -> None:
        assert (await call(system, "POST", f"/sessions/{session_id}/touch", user))[0] == 200

    first, cursor = await page(None)
    # Between pages: sessions not yet seen (pages 2 and 3) and one already seen jump to the front, and
    # a new session appears.
    for session_id in (before[12]["id"], before[7]["id"], before[0]["id"]):
        await touch(session_id)
    await create(system, user, "opened meanwhile")
    second, cursor = await page(cursor)
    for session_id in (before[12]["id"], before[14]["id"], before[6]["id"]):
        await touch(session_id)
    third, cursor = await page(cursor)
    assert cursor is None
    seen = ids(first) + ids(second) + ids(third)
    assert len(seen) == len(set(seen)), "a session was listed twice"
    assert seen == ids(before), "pages keep the order of the first page: nothing skipped or repeated"
    # Items are shown as they are now (a touched one with its new last access), in their old place.
    assert third[2]["last_accessed_at"] > before[12]["last_accessed_at"]
    # A new list starts from the new order.
    after = await list_all(system, user)
    opened = next(s["id"] for s in after if s["name"] == "opened meanwhile")
    touched = [before[6]["id"], before[14]["id"], before[12]["id"], opened, before[0]["id"], before[7]["id"]]
    assert ids(after)[:6] == touched


async def test_a_deleted_session_leaves_the_pages_that_follow(system: Gateway) -> None:
    user = await new_user(system)
    for i in range(6):
        await create(system, user, f"s{i}")
    before = await list_all(system, user)
    status, body, _ = await call(system, "GET", "/sessions", user, limit=3)
    cursor = body["data"]["next_cursor"]
    await call(system, "POST", f"/sessions/{before[4]['id']}/touch", user)
    assert (await call(system, "DELETE", f"/sessions/{before[4]['id']}", user))[0] == 204
    status, body, _ = await call(system, "GET", "/sessions", user, limit=3, cursor=cursor)
    assert ids(body["data"]["items"]) == [before[3]["id"], before[5]["id"]]
    assert body["data"]["next_cursor"] is None


async def test_the_status_filter_keeps_the_access_order(system: Gateway) -> None:
    user = await new_user(system)
    sessions = [await create(system, user, f"s{i}") for i in range(6)]
    for session in sessions[::2]:
        await call(system, "PATCH", f"/sessions/{session['id']}", user, {"status": "suspended"})
    await call(system, "PATCH", f"/sessions/{sessions[1]['id']}", user, {"status": "terminated"})
    suspended = await list_all(system, user, status="suspended", limit=2)
    assert ids(suspended) == [sessions[4]["id"], sessions[2]["id"], sessions[0]["id"]]
    assert {s["status"] for s in suspended} == {"suspended"}
    assert ids(await list_all(system, user, status="active")) == [sessions[5]["id"], sessions[3]["id"]]
    assert ids(await list_all(system, user, status="terminated")) == [sessions[1]["id"]]
    assert len(await list_all(system, user, limit=1)) == 6


async def test_admins_list_users_of_their_tenant_members_only_themselves(system: Gateway) -> None:
    admin = await new_user(system)
    member = await member_of(system, admin)
    stranger = await new_user(system)
    mine = await create(system, member, "member's")
    await create(system, admin, "admin's")
    await create(system, stranger, "stranger's")

    assert ids(await list_all(system, admin, user_id=member.id)) == [mine["id"]]
    assert ids(await list_all(system, member, user_id=member.id)) == [mine["id"]]
    status, body, _ = await call(system, "GET", "/sessions", member, user_id=admin.id)
    assert (status, body["error"]["code"]) == (403, "FORBIDDEN")
    # Another tenant's user is nobody in the admin's tenant: an empty list, which tells nothing.
    assert await list_all(system, admin, user_id=stranger.id) == []
    assert await list_all(system, admin, user_id=str(uuid.uuid4())) == []
    # By id, a session is its owner's only: the admin who listed it gets 404 like everyone else.
    status, _, _ = await call(system, "GET", f"/sessions/{mine['id']}", admin)
    assert status == 404


async def test_upkeep_keeps_the_old_places_a_live_cursor_needs(system: Gateway) -> None:
    user = await new_user(system)
    for i in range(4):
        await create(system, user, f"s{i}")
    before = await list_all(system, user)
    status, body, _ = await call(system, "GET", "/sessions", user, limit=2)
    await call(system, "POST", f"/sessions/{before[3]['id']}/touch", user)
    ctx: SessionContext = system.services["session"].ctx.components["session"]
    await sweep.prune(ctx, utcnow())
    status, body, _ = await call(system, "GET", "/sessions", user, limit=2, cursor=body["data"]["next_cursor"])
    assert ids(body["data"]["items"]) == ids(before[2:])


@pytest.mark.parametrize("session_overrides", [{"list_cursor_ttl_seconds": 0.5}])
async def test_a_cursor_older_than_its_lifetime_is_422(system: Gateway, session_overrides: dict[str, Any]) -> None:
    user = await new_user(system)
    for i in range(3):
        await create(system, user, f"s{i}")
    status, body, _ = await call(system, "GET", "/sessions", user, limit=2)
    await asyncio.sleep(0.6)
    status, body, _ = await call(system, "GET", "/sessions", user, limit=2, cursor=body["data"]["next_cursor"])
    assert (status, body["error"]["code"]) == (422, "VALIDATION_FAILED")
    assert body["error"]["details"] == [{"field": "cursor", "message": "expired"}]
