"""Removing a user and deleting a tenant, through the gateway with real NATS: logins stop, every
device is revoked at every gateway, the events go out, and the emails are free again."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from contracts import auth as api
from services.auth import repository as repo
from services.auth.context import AuthContext
from services.gateway.edge import VERIFIER_KEY
from services.gateway.settings import GatewaySettings
from tests.auth.helpers import (
    PASSWORD,
    add_member,
    claims_of,
    delete,
    get,
    login,
    post,
    register,
    registered_and_logged_in,
    unique_email,
)
from tests.support import Gateway, NatsServer, free_port, running_gateway

STREAM_DEADLINE_SECONDS = 15.0


@pytest.fixture
def auth_overrides() -> dict[str, Any]:
    # Real Argon2id with small parameters (these tests log many users in); a tiny batch so that a
    # tenant of a handful of users is deleted in several transactions.
    return {"argon2_memory_kib": 1024, "argon2_time_cost": 1, "tenant_deletion_batch_users": 2}


async def _events(system: Gateway, event_type: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` events of a type on the stream (each test has its own NATS), and no more."""
    js = await system.admin_js()  # test-admin: the gateway's identity may not read auth's events
    subscription = await js.subscribe(f"evt.{event_type}", ordered_consumer=True)
    found: list[dict[str, Any]] = []
    try:
        while len(found) < count:
            found.append(orjson.loads((await subscription.next_msg(timeout=STREAM_DEADLINE_SECONDS)).data))
        with contextlib.suppress(TimeoutError):
            extra = await subscription.next_msg(timeout=0.5)
            raise AssertionError(f"one {event_type} event too many: {extra.data!r}")
    finally:
        await subscription.unsubscribe()
    return found


async def _whoami(gateway: Gateway, token: str) -> tuple[int, Any]:
    """Checked by the gateway alone: a 401 here is the gateway's deny set, not a missing user."""
    return await get(gateway, "/auth/whoami", token)


async def _admin_with_members(system: Gateway, members: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An admin's login, and each member (as added) with the member's own login under ``tokens``."""
    email = unique_email("admin")
    await register(system, email)
    admin = await login(system, email)
    added = []
    for _ in range(members):
        member = await add_member(system, admin["access_token"])
        member["tokens"] = await login(system, member["email"])
        added.append(member)
    return admin, added


@contextlib.asynccontextmanager
async def _another_gateway(nats: NatsServer, system: Gateway) -> AsyncIterator[Gateway]:
    data_dir = system.services["auth"].ctx.settings.data_dir
    settings = GatewaySettings(nats_url=nats.url, data_dir=data_dir, gateway_port=free_port(), log_level="WARNING")
    async with running_gateway(settings) as gateway:
        assert await gateway.app[VERIFIER_KEY].revocations.wait_current(STREAM_DEADLINE_SECONDS)  # type: ignore[attr-defined]
        yield gateway


async def _refused_eventually(gateway: Gateway, token: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STREAM_DEADLINE_SECONDS
    while True:
        status, body = await _whoami(gateway, token)
        if status == 401 or loop.time() > deadline:
            assert status == 401, body
            return dict(body["error"])
        await asyncio.sleep(0.05)


async def test_a_removed_user_is_logged_out_everywhere_and_cannot_log_in(system: Gateway, nats: NatsServer) -> None:
    admin, (member,) = await _admin_with_members(system, 1)
    second_device = await login(system, member["email"])
    async with _another_gateway(nats, system) as other:
        assert (await _whoami(other, member["tokens"]["access_token"]))[0] == 200

        status, body = await delete(system, f"/tenants/me/users/{member['id']}", admin["access_token"])
        assert status == 204, body

        for tokens in (member["tokens"], second_device):
            status, body = await _whoami(system, tokens["access_token"])
            assert status == 401 and body["error"]["code"] == "TOKEN_REVOKED", body
        assert (await _refused_eventually(other, second_device["access_token"]))["code"] == "TOKEN_REVOKED"
    status, body, _ = await post(system, "/auth/login", {"email": member["email"], "password": PASSWORD})
    assert status == 401 and body["error"]["code"] == "INVALID_CREDENTIALS"
    status, body, _ = await post(system, "/auth/refresh", {"refresh_token": member["tokens"]["refresh_token"]})
    assert status == 401, body
    status, users = await get(system, "/tenants/me/users", admin["access_token"])
    assert [u["id"] for u in users["data"]["items"]] == [admin["user"]["id"]]

    (removed,) = await _events(system, api.USER_REMOVED, 1)
    assert removed["data"] == {"user_id": member["id"], "removed_by": admin["user"]["id"]}
    assert removed["tenant_id"] == admin["user"]["tenant_id"] and removed["target"] == f"user:{member['id']}"
    assert removed["actor"]["user_id"] == admin["user"]["id"]
    revocations = await _events(system, api.SESSION_REVOKED, 1)
    assert sorted(revocations[0]["data"]["session_ids"]) == sorted(
        claims_of(t["access_token"])["sid"] for t in (member["tokens"], second_device)
    )
    # The email is free again.
    status, body, _ = await post(
        system, "/tenants/me/users", {"email": member["email"], "password": PASSWORD}, token=admin["access_token"]
    )
    assert status == 201, body
    assert body["data"]["id"] != member["id"]


async def test_only_an_admin_removes_and_only_in_their_own_tenant(system: Gateway) -> None:
    admin, (member,) = await _admin_with_members(system, 1)
    _, outsider_tokens = await registered_and_logged_in(system)
    outsider_id = claims_of(outsider_tokens["access_token"])["sub"]

    status, body = await delete(system, f"/tenants/me/users/{admin['user']['id']}", member["tokens"]["access_token"])
    assert status == 403 and body["error"]["code"] == "FORBIDDEN", body
    status, body = await delete(system, "/tenants/me", member["tokens"]["access_token"])
    assert status == 403 and body["error"]["code"] == "FORBIDDEN", body
    for unknown in (outsider_id, str(uuid.uuid4())):
        status, body = await delete(system, f"/tenants/me/users/{unknown}", admin["access_token"])
        assert status == 404 and body["error"]["code"] == "NOT_FOUND", body
    status, body = await delete(system, "/tenants/me/users/not-a-uuid", admin["access_token"])
    assert status == 422 and body["error"]["code"] == "VALIDATION_FAILED", body
    assert (await _whoami(system, outsider_tokens["access_token"]))[0] == 200


async def test_an_admin_cannot_remove_themself_but_may_remove_another_admin(system: Gateway) -> None:
    admin, _ = await _admin_with_members(system, 0)
    other_admin = await add_member(system, admin["access_token"], role="admin")
    status, body = await delete(system, f"/tenants/me/users/{admin['user']['id']}", admin["access_token"])
    assert status == 409 and body["error"]["code"] == "CANNOT_REMOVE_SELF", body
    other = await login(system, other_admin["email"])
    status, body = await delete(system, f"/tenants/me/users/{admin['user']['id']}", other["access_token"])
    assert status == 204, body
    # The removed admin's token no longer acts for the tenant.
    status, body = await delete(system, f"/tenants/me/users/{other_admin['id']}", admin["access_token"])
    assert status == 401, body


async def test_deleting_a_tenant_removes_every_user_in_batches_and_frees_the_emails(system: Gateway) -> None:
    admin, members = await _admin_with_members(system, 4)
    bystander_email = unique_email("bystander")
    await register(system, bystander_email)
    bystander = await login(system, bystander_email)

    status, body = await delete(system, "/tenants/me", admin["access_token"])
    assert status == 204, body

    everyone = [(admin["user"]["email"], admin), *((m["email"], m["tokens"]) for m in members)]
    for email, tokens in everyone:
        status, body = await _whoami(system, tokens["access_token"])
        assert status == 401 and body["error"]["code"] == "TOKEN_REVOKED", (email, body)
        status, body, _ = await post(system, "/auth/login", {"email": email, "password": PASSWORD})
        assert status == 401 and body["error"]["code"] == "INVALID_CREDENTIALS", (email, body)

    # 5 users, 2 per batch, the admin last: 3 events, each user in exactly one, the last one complete.
    deleted = await _events(system, api.TENANT_DELETED, 3)
    assert [e["data"]["complete"] for e in deleted] == [False, False, True]
    named = [user for e in deleted for user in e["data"]["user_ids"]]
    assert sorted(named) == sorted([admin["user"]["id"], *(m["id"] for m in members)])
    assert deleted[-1]["data"]["user_ids"][-1] == admin["user"]["id"]
    assert {e["tenant_id"] for e in deleted} == {admin["user"]["tenant_id"]}
    assert len(await _events(system, api.SESSION_REVOKED, 5)) == 5

    # Another tenant is untouched; every email registers again, as a new tenant.
    assert (await get(system, "/tenants/me", bystander["access_token"]))[0] == 200
    again = await register(system, admin["user"]["email"])
    assert again["tenant"]["id"] != admin["user"]["tenant_id"]
    await register(system, members[0]["email"])


async def test_a_deletion_cut_short_is_finished_by_repeating_it(system: Gateway) -> None:
    admin, members = await _admin_with_members(system, 4)
    auth: AuthContext = system.services["auth"].ctx.components["auth"]
    real = auth.transact
    calls = 0

    async def crash_after_the_first_batch(fn: Callable[[Any], Any]) -> Any:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("the auth service died here")
        return await real(fn)

    auth.transact = crash_after_the_first_batch  # type: ignore[method-assign]
    try:
        status, _ = await delete(system, "/tenants/me", admin["access_token"])
        assert status >= 500
    finally:
        auth.transact = real  # type: ignore[method-assign]
    status, users = await get(system, "/tenants/me/users", admin["access_token"])
    assert status == 200 and len(users["data"]["items"]) == 3  # two were deleted, the admin is still there

    status, body = await delete(system, "/tenants/me", admin["access_token"])
    assert status == 204, body
    deleted = await _events(system, api.TENANT_DELETED, 3)
    named = [user for e in deleted for user in e["data"]["user_ids"]]
    assert sorted(named) == sorted([admin["user"]["id"], *(m["id"] for m in members)])
    assert [e["data"]["complete"] for e in deleted][-1] is True


async def test_a_user_added_while_the_tenant_is_deleted_is_refused(system: Gateway) -> None:
    admin, _ = await _admin_with_members(system, 0)
    auth: AuthContext = system.services["auth"].ctx.components["auth"]
    real = auth.hashing.hash
    tenant_id = uuid.UUID(admin["user"]["tenant_id"])

    async def tenant_deleted_meanwhile(password: str, **options: Any) -> str:
        await auth.store.run(lambda tx: repo.delete_tenant(tx, tenant_id))
        return await real(password, **options)

    auth.hashing.hash = tenant_deleted_meanwhile  # type: ignore[method-assign]
    try:
        status, body, _ = await post(
            system, "/tenants/me/users", {"email": unique_email(), "password": PASSWORD}, token=admin["access_token"]
        )
    finally:
        auth.hashing.hash = real  # type: ignore[method-assign]
    assert status == 404 and body["error"]["code"] == "NOT_FOUND", body
