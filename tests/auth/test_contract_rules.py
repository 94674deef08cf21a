"""Promises of /work/shared/API.md that clients rely on: what a reply may contain, how it is shaped,
and how a refusal tells the client when to come back.

Password hashing is made cheap here (so a test can create dozens of users); every other auth
setting keeps its default.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

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
    retry_after,
    unique_email,
)
from tests.support import Gateway

FAST_HASHING: dict[str, Any] = {"argon2_memory_kib": 8, "argon2_time_cost": 1}
USER_FIELDS = {"id", "email", "name", "tenant_id", "roles", "created_at"}
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$")


@pytest.fixture
def auth_overrides() -> dict[str, Any]:
    return dict(FAST_HASHING)


async def _raw(gateway: Gateway, method: str, path: str, token: str, body: Any = None) -> tuple[int, bytes]:
    async with gateway.session.request(
        method, f"{gateway.api}{path}", json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return response.status, await response.read()


# Refusals for too many attempts say when to retry (423 and 429 carry Retry-After).
async def test_a_locked_password_change_says_when_to_retry(system: Gateway) -> None:
    _, tokens = await registered_and_logged_in(system)
    change = {"current_password": "not the password", "new_password": "a brand new password"}
    for _ in range(10):
        status, body, _ = await post(system, "/users/me/password", change, token=tokens["access_token"])
        assert status == 401 and body["error"]["code"] == "INVALID_CREDENTIALS", body
    status, body, headers = await post(system, "/users/me/password", change, token=tokens["access_token"])
    assert status == 423 and body["error"]["code"] == "ACCOUNT_LOCKED", body
    retry_after(headers)


@pytest.mark.parametrize("auth_overrides", [{**FAST_HASHING, "ip_failure_limit": 5}])
async def test_a_throttled_address_is_told_when_to_retry(system: Gateway, auth_overrides: dict[str, Any]) -> None:
    email = unique_email()
    await register(system, email)
    for _ in range(5):
        status, _, _ = await post(system, "/auth/login", {"email": unique_email(), "password": "a wrong guess"})
        assert status == 401
    for password in ("a wrong guess", PASSWORD):
        status, body, headers = await post(system, "/auth/login", {"email": email, "password": password})
        assert status == 429 and body["error"]["code"] == "RATE_LIMITED", body
        window = system.services["auth"].ctx.settings.ip_failure_window_seconds
        assert retry_after(headers) <= window


async def test_parallel_guesses_beyond_the_limit_are_told_when_to_retry(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    results = await asyncio.gather(
        *(post(system, "/auth/login", {"email": email, "password": f"guess number {i}"}) for i in range(30))
    )
    refused = [(status, headers) for status, _, headers in results if status != 401]
    assert len(refused) >= 20 and {status for status, _ in refused} <= {423, 429}, [r[0] for r in results]
    for _, headers in refused:
        retry_after(headers)
    status, _, headers = await post(system, "/auth/login", {"email": email, "password": PASSWORD})
    assert status == 423
    retry_after(headers)


@pytest.mark.parametrize("auth_overrides", [{"argon2_time_cost": 8, "lockout_threshold": 2}])
async def test_attempts_beyond_those_still_being_checked_are_told_when_to_retry(
    system: Gateway, auth_overrides: dict[str, Any]
) -> None:
    """Slow hashes keep the two allowed attempts in flight while the others arrive: those get 429."""
    email = unique_email()
    await register(system, email)
    results = await asyncio.gather(
        *(post(system, "/auth/login", {"email": email, "password": f"guess number {i}"}) for i in range(8))
    )
    statuses = [status for status, _, _ in results]
    assert statuses.count(401) == 2 and 429 in statuses and set(statuses) <= {401, 423, 429}, statuses
    for status, _, headers in results:
        if status != 401:
            retry_after(headers)


# A user as clients see it: exactly the documented fields, never a password or its hash.
def _assert_public_user(user: dict[str, Any]) -> None:
    assert set(user) == USER_FIELDS, sorted(user)
    assert not [key for key in user if "password" in key.lower() or "hash" in key.lower()]
    assert "$argon2" not in json.dumps(user)


async def test_every_reply_with_a_user_carries_exactly_the_public_fields(system: Gateway) -> None:
    email = unique_email()
    registered = await register(system, email, name="Ada")
    _assert_public_user(registered["user"])
    tokens = await login(system, email)
    _assert_public_user(tokens["user"])
    status, body, _ = await post(system, "/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    assert status == 200
    _assert_public_user(body["data"]["user"])
    token = body["data"]["access_token"]

    status, me = await get(system, "/users/me", token)
    assert status == 200
    _assert_public_user(me["data"])
    async with system.session.patch(
        f"{system.api}/users/me", json={"name": "Grace"}, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 200
        _assert_public_user((await response.json())["data"])

    _assert_public_user(await add_member(system, token))
    status, users = await get(system, "/tenants/me/users", token)
    assert status == 200 and len(users["data"]["items"]) == 2
    for user in users["data"]["items"]:
        _assert_public_user(user)


# A 204 has no body.
async def test_every_204_has_an_empty_body(system: Gateway) -> None:
    registered, first = await registered_and_logged_in(system)
    email = registered["user"]["email"]
    second, third = await login(system, email), await login(system, email)

    assert await _raw(system, "POST", "/auth/logout", first["access_token"], {}) == (204, b"")
    device = claims_of(second["access_token"])["sid"]
    assert await _raw(system, "DELETE", f"/auth/devices/{device}", third["access_token"]) == (204, b"")
    change = {"current_password": PASSWORD, "new_password": "another long password"}
    assert await _raw(system, "POST", "/users/me/password", third["access_token"], change) == (204, b"")
    assert await _raw(system, "POST", "/auth/logout-all", third["access_token"], {}) == (204, b"")


# Timestamps are RFC 3339 UTC strings.
def _assert_utc_timestamp(value: Any) -> datetime:
    assert isinstance(value, str) and RFC3339_UTC.match(value), value
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0), value
    assert abs(datetime.now(UTC) - parsed) < timedelta(minutes=5), value
    return parsed


async def test_timestamps_are_rfc3339_utc(system: Gateway) -> None:
    registered, tokens = await registered_and_logged_in(system)
    _assert_utc_timestamp(registered["user"]["created_at"])
    _assert_utc_timestamp(registered["tenant"]["created_at"])
    _assert_utc_timestamp(tokens["user"]["created_at"])
    renewed = (await post(system, "/auth/refresh", {"refresh_token": tokens["refresh_token"]}))[1]["data"]
    token = renewed["access_token"]

    status, me = await get(system, "/users/me", token)
    assert status == 200
    _assert_utc_timestamp(me["data"]["created_at"])
    status, tenant = await get(system, "/tenants/me", token)
    assert status == 200
    _assert_utc_timestamp(tenant["data"]["created_at"])
    status, users = await get(system, "/tenants/me/users", token)
    assert status == 200
    for user in users["data"]["items"]:
        _assert_utc_timestamp(user["created_at"])
    status, devices = await get(system, "/auth/devices", token)
    assert status == 200 and devices["data"]["items"]
    for device in devices["data"]["items"]:
        created = _assert_utc_timestamp(device["created_at"])
        assert _assert_utc_timestamp(device["last_used_at"]) >= created


# Another user's device, even in the same tenant, is indistinguishable from a missing one.
async def test_another_users_device_in_the_same_tenant_is_not_found_like_a_missing_one(system: Gateway) -> None:
    _, admin = await registered_and_logged_in(system)
    member = await login(system, (await add_member(system, admin["access_token"]))["email"])
    admin_device = claims_of(admin["access_token"])["sid"]
    status, other = await delete(system, f"/auth/devices/{admin_device}", member["access_token"])
    assert status == 404
    status, missing = await delete(system, f"/auth/devices/{uuid.uuid4()}", member["access_token"])
    assert status == 404
    assert other["error"] == missing["error"] and other["error"]["code"] == "NOT_FOUND"
    assert (await get(system, "/users/me", admin["access_token"]))[0] == 200


# Access tokens: configured issuer and audience, verifiable against the published JWKS.
async def _issuer_and_audience_of_a_new_token(system: Gateway) -> tuple[str, str]:
    _, tokens = await registered_and_logged_in(system)
    claims = claims_of(tokens["access_token"])
    return claims["iss"], claims["aud"]


async def test_access_tokens_carry_the_default_issuer_and_audience(system: Gateway) -> None:
    settings = system.services["auth"].ctx.settings
    assert (settings.jwt_issuer, settings.jwt_audience) == ("coditect-auth", "coditect-api")
    assert await _issuer_and_audience_of_a_new_token(system) == (settings.jwt_issuer, settings.jwt_audience)


@pytest.mark.parametrize(
    "auth_overrides", [{**FAST_HASHING, "jwt_issuer": "issuer-under-test", "jwt_audience": "audience-under-test"}]
)
async def test_access_tokens_carry_the_configured_issuer_and_audience(
    system: Gateway, auth_overrides: dict[str, Any]
) -> None:
    settings = system.services["auth"].ctx.settings
    assert (settings.jwt_issuer, settings.jwt_audience) == ("issuer-under-test", "audience-under-test")
    assert await _issuer_and_audience_of_a_new_token(system) == (settings.jwt_issuer, settings.jwt_audience)


async def test_an_access_token_verifies_against_the_jwks_key_its_kid_names(system: Gateway) -> None:
    registered, tokens = await registered_and_logged_in(system)
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["alg"] == "EdDSA"
    async with system.session.get(f"{system.api}/auth/jwks") as response:
        assert response.status == 200
        jwks = await response.json()
    assert set(jwks) == {"keys"}
    matching = [key for key in jwks["keys"] if key["kid"] == header["kid"]]
    assert len(matching) == 1 and "d" not in matching[0]
    settings = system.services["auth"].ctx.settings
    claims = jwt.decode(
        tokens["access_token"],
        jwt.PyJWK(matching[0]).key,
        algorithms=["EdDSA"],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    assert claims["sub"] == registered["user"]["id"] and claims["tid"] == registered["tenant"]["id"]


# Lists: 50 items unless asked, at most 500.
async def test_a_list_without_a_limit_returns_50_items_and_a_cursor_to_the_rest(system: Gateway) -> None:
    _, admin = await registered_and_logged_in(system)
    for _ in range(3):
        await asyncio.gather(*(add_member(system, admin["access_token"]) for _ in range(17)))
    status, first = await get(system, "/tenants/me/users", admin["access_token"])
    assert status == 200 and len(first["data"]["items"]) == 50 and first["data"]["next_cursor"]
    status, rest = await get(system, "/tenants/me/users", admin["access_token"], cursor=first["data"]["next_cursor"])
    assert status == 200 and len(rest["data"]["items"]) == 2 and rest["data"]["next_cursor"] is None
    assert len({u["id"] for u in first["data"]["items"] + rest["data"]["items"]}) == 52


async def test_a_list_limit_above_500_is_refused_naming_the_limit(system: Gateway) -> None:
    _, tokens = await registered_and_logged_in(system)
    for path in ("/tenants/me/users", "/auth/devices"):
        status, body = await get(system, path, tokens["access_token"], limit="501")
        assert status == 422 and body["error"]["code"] == "VALIDATION_FAILED", body
        assert "limit" in {detail["field"] for detail in body["error"]["details"]}, body
        status, body = await get(system, path, tokens["access_token"], limit="500")
        assert status == 200 and len(body["data"]["items"]) == 1 and body["data"]["next_cursor"] is None, body
