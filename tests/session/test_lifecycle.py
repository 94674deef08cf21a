"""Workspace sessions through the gateway, on the real session service, NATS and store: the whole
lifecycle, the state machine, If-Match and versions, forks, and what bad input gets."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any, cast

import pytest

from contracts import session as api
from contracts.identity import Caller
from services.session import sessions
from services.session.context import SessionContext
from shared.errors import ServiceError
from shared.store import Store
from tests.session.helpers import Gate, User, call, create, new_user
from tests.support import Gateway


async def test_a_session_goes_through_its_whole_lifecycle(system: Gateway) -> None:
    user = await new_user(system)
    status, body, headers = await call(
        system, "POST", "/sessions", user, {"name": "  refactor auth  ", "workspace_path": "projects/api"}
    )
    assert status == 201, body
    created = body["data"]
    assert created["name"] == "refactor auth" and created["workspace_path"] == "projects/api"
    assert (created["status"], created["version"], created["parent_session_id"]) == ("active", 1, None)
    assert (created["user_id"], created["tenant_id"]) == (user.id, user.tenant_id)
    assert created["created_at"] == created["updated_at"] == created["last_accessed_at"]
    assert headers["ETag"] == '"1"'
    path = f"/sessions/{created['id']}"

    status, body, headers = await call(system, "GET", path, user)
    assert (status, body["data"], headers["ETag"]) == (200, created, '"1"')

    status, body, headers = await call(system, "PATCH", path, user, {"name": "auth v2"}, {"If-Match": '"1"'})
    assert status == 200, body
    assert (body["data"]["name"], body["data"]["version"], headers["ETag"]) == ("auth v2", 2, '"2"')
    assert body["data"]["updated_at"] > created["updated_at"]

    status, body, _ = await call(system, "PATCH", path, user, {"status": "suspended"})
    assert (status, body["data"]["status"], body["data"]["version"]) == (200, "suspended", 3)
    status, body, _ = await call(system, "PATCH", path, user, {"status": "active"})
    assert (status, body["data"]["status"], body["data"]["version"]) == (200, "active", 4)
    resumed = body["data"]
    assert resumed["last_accessed_at"] > created["last_accessed_at"]  # resuming is an access

    status, body, headers = await call(system, "POST", f"{path}/touch", user)
    assert status == 200, body
    assert body["data"]["last_accessed_at"] > resumed["last_accessed_at"]
    assert body["data"]["version"] == 4 and headers["ETag"] == '"4"'  # an access, not a change

    status, body, _ = await call(system, "PATCH", path, user, {"status": "terminated"})
    assert (status, body["data"]["status"], body["data"]["version"]) == (200, "terminated", 5)

    status, _, _ = await call(system, "DELETE", path, user)
    assert status == 204
    for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/touch"), ("POST", "/fork")):
        status, body, _ = await call(system, method, path + suffix, user, {} if method != "GET" else None)
        assert (status, body["error"]["code"]) == (404, "NOT_FOUND"), (method, suffix)
    status, body, _ = await call(system, "GET", "/sessions", user)
    assert body["data"] == {"items": [], "next_cursor": None}


async def test_terminated_is_final(system: Gateway) -> None:
    user = await new_user(system)
    session = await create(system, user)
    path = f"/sessions/{session['id']}"
    assert (await call(system, "PATCH", path, user, {"status": "terminated"}))[0] == 200
    for target in ("active", "suspended"):
        status, body, _ = await call(system, "PATCH", path, user, {"status": target})
        assert (status, body["error"]["code"]) == (409, "INVALID_TRANSITION")
        assert body["error"]["details"] == {"from": "terminated", "to": target}
    status, body, _ = await call(system, "PATCH", path, user, {"name": "again"})
    assert (status, body["error"]["code"]) == (409, "SESSION_TERMINATED")
    status, body, _ = await call(system, "POST", f"{path}/touch", user)
    assert (status, body["error"]["code"]) == (409, "SESSION_TERMINATED")
    status, body, _ = await call(system, "GET", path, user)
    assert (body["data"]["status"], body["data"]["version"]) == ("terminated", 2)
    # What it was can still be forked into a new, active session.
    status, body, _ = await call(system, "POST", f"{path}/fork", user)
    assert (status, body["data"]["status"], body["data"]["parent_session_id"]) == (201, "active", session["id"])


async def test_a_read_after_a_change_shows_the_change(system: Gateway) -> None:
    """Reads share decoded records (shared.decoded): a changed session must never read as it was."""
    user = await new_user(system)
    session = await create(system, user)
    path = f"/sessions/{session['id']}"
    for version, name in ((1, session["name"]), (2, "renamed"), (3, session["name"])):
        if version > 1:
            assert (await call(system, "PATCH", path, user, {"name": name}))[0] == 200
        status, body, headers = await call(system, "GET", path, user)
        assert (status, body["data"]["name"], body["data"]["version"], headers["ETag"]) == (
            200,
            name,
            version,
            f'"{version}"',
        )


async def test_a_stale_if_match_is_412_and_nothing_changes(system: Gateway) -> None:
    user = await new_user(system)
    session = await create(system, user)
    path = f"/sessions/{session['id']}"
    assert (await call(system, "PATCH", path, user, {"name": "second"}, {"If-Match": '"1"'}))[0] == 200
    for header in ('"1"', 'W/"2"', "2", '"7", "8"'):
        status, body, _ = await call(system, "PATCH", path, user, {"name": "lost"}, {"If-Match": header})
        assert (status, body["error"]["code"]) == (412, "PRECONDITION_FAILED"), header
        assert body["error"]["details"] == {"current_version": 2}
    status, body, _ = await call(system, "DELETE", path, user, headers={"If-Match": '"1"'})
    assert (status, body["error"]["code"]) == (412, "PRECONDITION_FAILED")
    status, body, _ = await call(system, "GET", path, user)
    assert (body["data"]["name"], body["data"]["version"]) == ("second", 2)
    for header in ('"1", "2"', "*"):
        status, body, _ = await call(system, "PATCH", path, user, {"name": f"via {header}"}, {"If-Match": header})
        assert status == 200, header
    assert (await call(system, "DELETE", path, user, headers={"If-Match": '"4"'}))[0] == 204


async def test_eight_concurrent_patches_with_one_if_match_let_exactly_one_through(system: Gateway) -> None:
    user = await new_user(system)
    # Several sessions at once, so the racing requests overlap inside the service, not only at the edge.
    sessions = [await create(system, user, f"s{i}") for i in range(5)]

    async def race(session_id: str) -> list[tuple[int, Any]]:
        results = await asyncio.gather(
            *(
                call(system, "PATCH", f"/sessions/{session_id}", user, {"name": f"writer {i}"}, {"If-Match": '"1"'})
                for i in range(8)
            )
        )
        return [(status, body) for status, body, _ in results]

    for session, results in zip(sessions, await asyncio.gather(*(race(s["id"]) for s in sessions)), strict=True):
        statuses = sorted(status for status, _ in results)
        assert statuses == [200] + [412] * 7, statuses
        (winner,) = [body["data"] for status, body in results if status == 200]
        status, body, headers = await call(system, "GET", f"/sessions/{session['id']}", user)
        assert (body["data"]["name"], body["data"]["version"], headers["ETag"]) == (winner["name"], 2, '"2"')


async def test_eight_concurrent_updates_inside_the_service_let_exactly_one_through(system: Gateway) -> None:
    user = await new_user(system)
    session = await create(system, user)
    real: SessionContext = system.services["session"].ctx.components["session"]
    ctx = dataclasses.replace(real, store=cast(Store, Gate(real.store, parties=8)))
    caller = Caller(tenant_id=user.tenant_id, user_id=user.id, session_id=uuid.uuid4())

    async def update(i: int) -> str:
        message = api.UpdateSession(caller=caller, session_id=session["id"], name=f"writer {i}", if_match=[1])
        try:
            await sessions.update(ctx, message)
        except ServiceError as error:
            return error.code
        return "ok"

    outcomes = sorted(await asyncio.gather(*(update(i) for i in range(8))))
    assert outcomes == ["PRECONDITION_FAILED"] * 7 + ["ok"], outcomes


async def test_forks_of_forks_name_their_parents(system: Gateway) -> None:
    user = await new_user(system)
    root = await create(system, user, "root", workspace_path="repo")
    status, body, headers = await call(system, "POST", f"/sessions/{root['id']}/fork", user)
    assert status == 201, body
    child = body["data"]
    assert (child["name"], child["parent_session_id"], child["status"], child["version"]) == (
        "root (fork)",
        root["id"],
        "active",
        1,
    )
    assert child["id"] != root["id"] and child["workspace_path"] == child["id"]
    assert headers["ETag"] == '"1"'
    status, body, _ = await call(system, "POST", f"/sessions/{child['id']}/fork", user, {"name": "grandchild"})
    grandchild = body["data"]
    assert (status, grandchild["name"], grandchild["parent_session_id"]) == (201, "grandchild", child["id"])
    chain = [grandchild]
    while chain[-1]["parent_session_id"] is not None:
        status, body, _ = await call(system, "GET", f"/sessions/{chain[-1]['parent_session_id']}", user)
        chain.append(body["data"])
    assert [s["id"] for s in chain] == [grandchild["id"], child["id"], root["id"]]
    # The parent is not changed by being forked.
    status, body, _ = await call(system, "GET", f"/sessions/{root['id']}", user)
    assert body["data"] == root


async def _expect(
    system: Gateway, user: User, method: str, path: str, body: object, status: int, code: str, field: str | None = None
) -> None:
    got, reply, _ = await call(system, method, path, user, body)
    assert (got, reply["error"]["code"]) == (status, code), (method, path, body, reply)
    if field is not None:
        assert field in {d["field"] for d in reply["error"]["details"]}, reply


async def test_bad_input_gets_a_4xx_with_a_code(system: Gateway) -> None:
    user = await new_user(system)
    session = await create(system, user)
    path = f"/sessions/{session['id']}"
    for bad_id in ("not-a-uuid", "1", "%00"):
        for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/fork"), ("POST", "/touch")):
            await _expect(
                system, user, method, f"/sessions/{bad_id}{suffix}", {}, 422, "VALIDATION_FAILED", "session_id"
            )
    await _expect(system, user, "POST", "/sessions", {}, 422, "VALIDATION_FAILED", "name")
    await _expect(system, user, "POST", "/sessions", {"name": "   "}, 422, "VALIDATION_FAILED", "name")
    await _expect(system, user, "POST", "/sessions", {"name": "x" * 201}, 422, "VALIDATION_FAILED", "name")
    await _expect(system, user, "POST", "/sessions", {"name": 5}, 422, "VALIDATION_FAILED", "name")
    for bad_path in ("/etc", "a/../../b", "a\x00b", "x" * 5000):
        await _expect(
            system, user, "POST", "/sessions", {"name": "x", "workspace_path": bad_path}, 422, "VALIDATION_FAILED",
            "workspace_path",
        )  # fmt: skip
    await _expect(system, user, "PATCH", path, {"status": "paused"}, 422, "VALIDATION_FAILED", "status")
    await _expect(system, user, "PATCH", path, {"name": "x" * 201}, 422, "VALIDATION_FAILED", "name")
    await _expect(system, user, "POST", f"{path}/fork", {"name": ""}, 422, "VALIDATION_FAILED", "name")
    await _expect(system, user, "POST", "/sessions", ["name"], 422, "VALIDATION_FAILED", "body")
    async with system.session.post(
        f"{system.api}/sessions", data=b"{not json", headers={"Authorization": f"Bearer {user.token}"}
    ) as response:
        assert response.status == 415
    async with system.session.post(
        f"{system.api}/sessions",
        data=b"{not json",
        headers={"Authorization": f"Bearer {user.token}", "Content-Type": "application/json"},
    ) as response:
        assert (response.status, (await response.json())["error"]["code"]) == (400, "MALFORMED_JSON")
    status, body, _ = await call(system, "GET", path, user)
    assert body["data"] == session, "nothing above changed the session"


async def test_unknown_fields_are_422_naming_them_and_change_nothing(system: Gateway) -> None:
    """A body is closed: a misspelt or made-up field is refused with every such field named, on
    every route that takes a body, and nothing happens."""
    user = await new_user(system)
    status, body, _ = await call(system, "POST", "/sessions", user, {"name": "mine", "colour": "blue", "nme": "x"})
    assert (status, body["error"]["code"]) == (422, "VALIDATION_FAILED"), body
    assert [detail["field"] for detail in body["error"]["details"]] == ["colour", "nme"]
    status, body, _ = await call(system, "GET", "/sessions", user)
    assert (status, body["data"]["items"]) == (200, []), "a refused create created nothing"

    session = await create(system, user, "kept")
    path = f"/sessions/{session['id']}"
    for method, route, payload in (
        ("PATCH", path, {"staus": "suspended"}),
        ("PATCH", path, {"name": "renamed", "version": 7}),
        ("POST", f"{path}/fork", {"name": "f", "parent_session_id": session["id"]}),
        ("POST", f"{path}/touch", {"at": "2020-01-01T00:00:00Z"}),
    ):
        status, body, _ = await call(system, method, route, user, payload)
        assert (status, body["error"]["code"]) == (422, "VALIDATION_FAILED"), (route, payload, body)
        assert [detail["field"] for detail in body["error"]["details"]] == sorted(set(payload) - {"name"}), body
    status, body, headers = await call(system, "GET", path, user)
    assert (body["data"], headers["ETag"]) == (session, '"1"'), "nothing above changed the session"
    status, body, _ = await call(system, "GET", "/sessions", user)
    assert [item["id"] for item in body["data"]["items"]] == [session["id"]], "no fork was made"


async def test_identity_fields_in_a_body_are_refused_not_used(system: Gateway) -> None:
    """The owner comes from the token and the session from the path: a body naming them is a 422,
    never another user's or tenant's session."""
    user, other = await new_user(system), await new_user(system)
    forged = {"tenant_id": other.tenant_id, "user_id": other.id, "session_id": str(uuid.uuid4())}
    for payload in (
        {"caller": forged},
        {"client": {"ip": "10.0.0.1"}},
        *({key: value} for key, value in forged.items()),
    ):
        status, body, _ = await call(system, "POST", "/sessions", user, {"name": "mine", **payload})
        assert (status, body["error"]["code"]) == (422, "VALIDATION_FAILED"), (payload, body)
        assert [detail["field"] for detail in body["error"]["details"]] == list(payload), body
    session = await create(system, user, "mine")
    status, body, _ = await call(
        system, "PATCH", f"/sessions/{session['id']}", user, {"name": "renamed", "if_match": [7]}
    )
    assert (status, body["error"]["details"]) == (422, [{"field": "if_match", "message": "unknown field"}]), body
    for owner in (user, other):
        status, body, _ = await call(system, "GET", "/sessions", owner)
        expected = [(session["id"], "mine")] if owner is user else []
        assert [(item["id"], item["name"]) for item in body["data"]["items"]] == expected


async def test_requests_without_a_token_are_401(system: Gateway) -> None:
    for method, path in (("GET", "/sessions"), ("POST", "/sessions"), ("GET", f"/sessions/{uuid.uuid4()}")):
        status, body, _ = await call(system, method, path, None, {} if method == "POST" else None)
        assert (status, body["error"]["code"]) == (401, "UNAUTHORIZED")


@pytest.mark.parametrize("limit", ["0", "501", "-1", "ten", ""])
async def test_bad_list_queries_are_422_with_the_field(system: Gateway, limit: str) -> None:
    user = await new_user(system)
    status, body, _ = await call(system, "GET", "/sessions", user, limit=limit)
    assert (status, body["error"]["code"]) == (422, "VALIDATION_FAILED")
    assert body["error"]["details"][0]["field"] == "limit"
    for query in ({"status": "paused"}, {"cursor": "garbage"}, {"user_id": "nobody"}):
        status, body, _ = await call(system, "GET", "/sessions", user, **query)
        assert (status, body["error"]["details"][0]["field"]) == (422, next(iter(query))), body
