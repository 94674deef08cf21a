"""The authentication part of the API, end to end through the gateway on a real bus and store."""

from __future__ import annotations

import asyncio

import jwt

from tests.auth.helpers import PASSWORD, get, login, post, register, registered_and_logged_in, unique_email
from tests.support import Gateway


async def test_register_creates_a_tenant_whose_first_user_is_admin(system: Gateway) -> None:
    email = unique_email()
    data = await register(system, email, name="Ada", tenant_name="Analytical")
    assert data["user"]["email"] == email.lower()
    assert data["user"]["roles"] == ["admin"]
    assert data["tenant"]["name"] == "Analytical"
    assert data["user"]["tenant_id"] == data["tenant"]["id"]
    assert "password_hash" not in data["user"] and "password" not in data["user"]


async def test_emails_are_unique_case_insensitively(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    status, body, _ = await post(system, "/auth/register", {"email": email.upper(), "password": PASSWORD})
    assert status == 409 and body["error"]["code"] == "EMAIL_TAKEN"


async def test_concurrent_registrations_of_one_email_create_one_user(system: Gateway) -> None:
    email = unique_email()
    results = await asyncio.gather(
        *(post(system, "/auth/register", {"email": email, "password": PASSWORD}) for _ in range(4))
    )
    assert sorted(status for status, _, _ in results) == [201, 409, 409, 409]


async def test_login_returns_a_signed_token_pair_with_the_documented_claims(system: Gateway) -> None:
    registered, tokens = await registered_and_logged_in(system)
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 300
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["alg"] == "EdDSA" and header["kid"]
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["sub"] == registered["user"]["id"]
    assert claims["tid"] == registered["tenant"]["id"]
    assert claims["roles"] == ["admin"]
    assert {"iss", "aud", "sid", "iat", "exp", "jti"} <= set(claims)
    assert len(tokens["refresh_token"]) >= 43
    status, me = await get(system, "/users/me", tokens["access_token"])
    assert status == 200 and me["data"]["id"] == registered["user"]["id"]


async def test_wrong_password_and_unknown_email_get_the_same_reply(system: Gateway) -> None:
    registered, _ = await registered_and_logged_in(system)
    wrong = await post(system, "/auth/login", {"email": registered["user"]["email"], "password": "not the password"})
    unknown = await post(system, "/auth/login", {"email": unique_email(), "password": "not the password"})
    assert wrong[0] == unknown[0] == 401
    assert wrong[1] == unknown[1]
    assert wrong[1]["error"]["code"] == "INVALID_CREDENTIALS"


async def test_refresh_rotates_and_a_reused_token_revokes_the_family(system: Gateway) -> None:
    _, first = await registered_and_logged_in(system)
    status, body, _ = await post(system, "/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert status == 200
    second = body["data"]
    assert second["refresh_token"] != first["refresh_token"]
    assert (await get(system, "/users/me", second["access_token"]))[0] == 200

    status, body, _ = await post(system, "/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert status == 401 and body["error"]["code"] == "REFRESH_TOKEN_REUSED"

    status, body, _ = await post(system, "/auth/refresh", {"refresh_token": second["refresh_token"]})
    assert status == 401 and body["error"]["code"] in {"REFRESH_TOKEN_INVALID", "REFRESH_TOKEN_REUSED"}
    status, body = await get(system, "/users/me", second["access_token"])
    assert status == 401 and body["error"]["code"] == "TOKEN_REVOKED"


async def test_two_concurrent_refreshes_with_one_token_do_not_both_succeed(system: Gateway) -> None:
    _, tokens = await registered_and_logged_in(system)
    results = await asyncio.gather(
        *(post(system, "/auth/refresh", {"refresh_token": tokens["refresh_token"]}) for _ in range(2))
    )
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 401]


async def test_unknown_refresh_token_is_invalid(system: Gateway) -> None:
    status, body, _ = await post(system, "/auth/refresh", {"refresh_token": "x" * 43})
    assert status == 401 and body["error"]["code"] == "REFRESH_TOKEN_INVALID"


async def test_logout_rejects_the_access_token_on_the_very_next_request(system: Gateway) -> None:
    _, tokens = await registered_and_logged_in(system)
    status, _, _ = await post(system, "/auth/logout", {}, token=tokens["access_token"])
    assert status == 204
    status, body = await get(system, "/users/me", tokens["access_token"])
    assert status == 401 and body["error"]["code"] == "TOKEN_REVOKED"
    status, _, _ = await post(system, "/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    assert status == 401


async def test_logout_all_revokes_every_device(system: Gateway) -> None:
    registered, laptop = await registered_and_logged_in(system)
    phone = await login(system, registered["user"]["email"], device_name="phone")
    status, _, _ = await post(system, "/auth/logout-all", {}, token=laptop["access_token"])
    assert status == 204
    for tokens in (laptop, phone):
        assert (await get(system, "/users/me", tokens["access_token"]))[0] == 401


async def test_devices_are_listed_and_one_can_be_revoked(system: Gateway) -> None:
    registered, laptop = await registered_and_logged_in(system)
    phone = await login(system, registered["user"]["email"], device_name="phone")
    status, body = await get(system, "/auth/devices", laptop["access_token"])
    assert status == 200
    devices = body["data"]["items"]
    assert body["data"]["next_cursor"] is None
    assert len(devices) == 2
    assert sum(d["current"] for d in devices) == 1
    phone_device = next(d for d in devices if d["device_name"] == "phone")
    assert set(phone_device) == {"id", "device_name", "created_at", "last_used_at", "ip", "user_agent", "current"}
    async with system.session.delete(
        f"{system.api}/auth/devices/{phone_device['id']}", headers={"Authorization": f"Bearer {laptop['access_token']}"}
    ) as response:
        assert response.status == 204
    assert (await get(system, "/users/me", phone["access_token"]))[0] == 401
    assert (await get(system, "/users/me", laptop["access_token"]))[0] == 200


async def test_password_change_revokes_other_devices_and_needs_the_current_password(system: Gateway) -> None:
    registered, laptop = await registered_and_logged_in(system)
    email = registered["user"]["email"]
    phone = await login(system, email)
    status, body, _ = await post(
        system,
        "/users/me/password",
        {"current_password": "wrong password", "new_password": "a new password"},
        token=laptop["access_token"],
    )
    assert status == 401 and body["error"]["code"] == "INVALID_CREDENTIALS"
    status, _, _ = await post(
        system,
        "/users/me/password",
        {"current_password": PASSWORD, "new_password": "a new password"},
        token=laptop["access_token"],
    )
    assert status == 204
    assert (await get(system, "/users/me", laptop["access_token"]))[0] == 200
    assert (await get(system, "/users/me", phone["access_token"]))[0] == 401
    assert (await post(system, "/auth/login", {"email": email, "password": PASSWORD}))[0] == 401
    await login(system, email, "a new password")


async def test_profile_update_and_tenant_read(system: Gateway) -> None:
    registered, tokens = await registered_and_logged_in(system, tenant_name="Acme")
    async with system.session.patch(
        f"{system.api}/users/me", json={"name": "Grace"}, headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ) as response:
        assert response.status == 200
        assert (await response.json())["data"]["name"] == "Grace"
    status, body = await get(system, "/tenants/me", tokens["access_token"])
    assert status == 200 and body["data"] == {**registered["tenant"]}


async def test_admins_manage_members_of_their_own_tenant_only(system: Gateway) -> None:
    _, admin_a = await registered_and_logged_in(system)
    _, admin_b = await registered_and_logged_in(system)
    member_email = unique_email("member")
    status, body, _ = await post(
        system,
        "/tenants/me/users",
        {"email": member_email, "password": PASSWORD, "role": "member", "name": "M"},
        token=admin_a["access_token"],
    )
    assert status == 201 and body["data"]["roles"] == ["member"]
    tenant_a = body["data"]["tenant_id"]

    status, body = await get(system, "/tenants/me/users", admin_a["access_token"])
    assert status == 200
    assert {u["email"] for u in body["data"]["items"]} >= {member_email.lower()}
    assert all(u["tenant_id"] == tenant_a for u in body["data"]["items"])

    status, body = await get(system, "/tenants/me/users", admin_b["access_token"])
    assert status == 200
    assert member_email.lower() not in {u["email"] for u in body["data"]["items"]}
    assert all(u["tenant_id"] != tenant_a for u in body["data"]["items"])

    member = await login(system, member_email)
    status, body = await get(system, "/tenants/me/users", member["access_token"])
    assert status == 403 and body["error"]["code"] == "FORBIDDEN"
    status, body, _ = await post(
        system, "/tenants/me/users", {"email": unique_email(), "password": PASSWORD}, token=member["access_token"]
    )
    assert status == 403


async def test_a_user_cannot_revoke_another_users_device(system: Gateway) -> None:
    _, alice = await registered_and_logged_in(system)
    _, bob = await registered_and_logged_in(system)
    bob_sid = jwt.decode(bob["access_token"], options={"verify_signature": False})["sid"]
    async with system.session.delete(
        f"{system.api}/auth/devices/{bob_sid}", headers={"Authorization": f"Bearer {alice['access_token']}"}
    ) as response:
        assert response.status == 404
    assert (await get(system, "/users/me", bob["access_token"]))[0] == 200


async def test_listing_users_pages_with_a_cursor(system: Gateway) -> None:
    _, admin = await registered_and_logged_in(system)
    for _ in range(3):
        status, _, _ = await post(
            system, "/tenants/me/users", {"email": unique_email(), "password": PASSWORD}, token=admin["access_token"]
        )
        assert status == 201
    status, first = await get(system, "/tenants/me/users", admin["access_token"], limit="2")
    assert status == 200 and len(first["data"]["items"]) == 2 and first["data"]["next_cursor"]
    status, second = await get(
        system, "/tenants/me/users", admin["access_token"], limit="2", cursor=first["data"]["next_cursor"]
    )
    assert status == 200 and len(second["data"]["items"]) == 2 and second["data"]["next_cursor"] is None
    ids = [u["id"] for u in first["data"]["items"] + second["data"]["items"]]
    assert len(set(ids)) == 4
    status, body = await get(system, "/tenants/me/users", admin["access_token"], cursor="AAAA")
    assert status == 422


async def test_bad_input_gets_coded_4xx(system: Gateway) -> None:
    cases = [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": unique_email(), "password": "short"}, "password"),
        ({"email": unique_email(), "password": "x" * 1025}, "password"),
        ({"password": PASSWORD}, "email"),
        ({"email": unique_email()}, "password"),
    ]
    for body, field in cases:
        status, reply, _ = await post(system, "/auth/register", body)
        assert status == 422, (body, reply)
        assert reply["error"]["code"] == "VALIDATION_FAILED"
        assert field in {d["field"] for d in reply["error"]["details"]}
    assert (await post(system, "/auth/register", {"email": unique_email(), "password": "8 chars!"}))[0] == 201
    assert (await post(system, "/auth/register", {"email": unique_email(), "password": "y" * 1024}))[0] == 201


async def test_a_client_cannot_smuggle_a_caller_identity(system: Gateway) -> None:
    registered, tokens = await registered_and_logged_in(system)
    forged = {
        "tenant_id": registered["tenant"]["id"],
        "user_id": registered["user"]["id"],
        "roles": ["admin"],
        "session_id": registered["user"]["id"],
    }
    status, body, _ = await post(system, "/auth/logout", {"caller": forged})
    assert status == 401
    status, body, _ = await post(
        system, "/auth/register", {"email": unique_email(), "password": PASSWORD, "caller": forged}
    )
    assert status == 201 and body["data"]["tenant"]["id"] != registered["tenant"]["id"]


async def test_whoami_answers_from_the_token_alone(system: Gateway) -> None:
    registered, tokens = await registered_and_logged_in(system)
    status, body = await get(system, "/auth/whoami", tokens["access_token"])
    assert status == 200
    assert body["data"]["user_id"] == registered["user"]["id"]
    assert body["data"]["tenant_id"] == registered["tenant"]["id"]
    assert body["data"]["roles"] == ["admin"]
    assert (await get(system, "/auth/whoami"))[0] == 401


async def test_devices_page_with_a_cursor_and_reject_bad_limits(system: Gateway) -> None:
    registered, tokens = await registered_and_logged_in(system)
    for _ in range(2):
        await login(system, registered["user"]["email"])
    status, first = await get(system, "/auth/devices", tokens["access_token"], limit="2")
    assert status == 200 and len(first["data"]["items"]) == 2 and first["data"]["next_cursor"]
    status, second = await get(system, "/auth/devices", tokens["access_token"], cursor=first["data"]["next_cursor"])
    assert status == 200 and len(second["data"]["items"]) == 1 and second["data"]["next_cursor"] is None
    ids = {d["id"] for d in first["data"]["items"] + second["data"]["items"]}
    assert len(ids) == 3
    for bad in ({"limit": "0"}, {"limit": "501"}, {"limit": "abc"}, {"cursor": "!!"}):
        status, body = await get(system, "/auth/devices", tokens["access_token"], **bad)
        assert status == 422 and body["error"]["details"], bad


async def test_the_profile_read_after_a_change_shows_the_change(system: Gateway) -> None:
    """Reads share decoded records (shared.decoded): a changed record must never read as it was."""
    _, tokens = await registered_and_logged_in(system, name="Before")
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await get(system, "/users/me", tokens["access_token"]))[1]["data"]["name"] == "Before"
    for name in ("After", "Before"):
        async with system.session.patch(f"{system.api}/users/me", json={"name": name}, headers=bearer) as response:
            assert response.status == 200
        status, body = await get(system, "/users/me", tokens["access_token"])
        assert (status, body["data"]["name"]) == (200, name)
