"""Security regressions the rest of the suite let through: each test here fails against a change a
review planted on purpose (revoking too much, denying too late, checking too little).

The auth service runs with its default settings: no ``auth_overrides`` in this module.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import jwt

from contracts import auth as api
from contracts.identity import Caller
from services.auth import repository as repo
from services.gateway.edge import VERIFIER_KEY
from services.gateway.tokens import JwksVerifier
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
from tests.support import Gateway, NatsServer

# Revocation reaches a gateway through the event stream; on a loaded machine that can take a while.
STREAM_DEADLINE_SECONDS = 15.0


def _operator(system: Gateway) -> NatsServer:
    """Rotation is operator-only on the bus: the gateway may not even send it."""
    assert system.nats is not None
    return system.nats


async def _rejected_eventually(gateway: Gateway, access_token: str) -> dict[str, Any]:
    """The error of GET /users/me with this token, polled until it is refused (or the deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STREAM_DEADLINE_SECONDS
    while True:
        status, body = await get(gateway, "/users/me", access_token)
        if status == 401 or loop.time() > deadline:
            assert status == 401, body
            return dict(body["error"])
        await asyncio.sleep(0.05)


async def _refreshed(gateway: Gateway, refresh_token: str) -> dict[str, Any]:
    status, body, _ = await post(gateway, "/auth/refresh", {"refresh_token": refresh_token})
    assert status == 200, body
    return dict(body["data"])


async def _assert_works(gateway: Gateway, access_token: str) -> None:
    status, body = await get(gateway, "/users/me", access_token)
    assert status == 200, body


async def _assert_revoked_at_once(gateway: Gateway, access_token: str) -> None:
    status, body = await get(gateway, "/users/me", access_token)
    assert status == 401 and body["error"]["code"] == "TOKEN_REVOKED", body


async def _stop_following_revocations(gateway: Gateway) -> None:
    """Cut the gateway off the revocation stream (as if it lagged): only its own deny can refuse now."""
    verifier = gateway.app[VERIFIER_KEY]
    assert isinstance(verifier, JwksVerifier)
    follower = verifier.revocations

    async def confirm_without_reading() -> None:
        follower._confirmed_at = time.monotonic()  # a follower that believes it is current, and lags

    follower.check = confirm_without_reading  # type: ignore[method-assign]
    await follower.stop()  # no live push either


# Logout signs out the caller's device, nothing else.
async def test_logout_revokes_only_the_callers_device(system: Gateway) -> None:
    registered, laptop = await registered_and_logged_in(system)
    phone = await login(system, registered["user"]["email"], device_name="phone")

    status, _, _ = await post(system, "/auth/logout", {}, token=laptop["access_token"])
    assert status == 204
    assert (await _rejected_eventually(system, laptop["access_token"]))["code"] == "TOKEN_REVOKED"

    await _assert_works(system, phone["access_token"])
    renewed = await _refreshed(system, phone["refresh_token"])
    await _assert_works(system, renewed["access_token"])
    status, devices = await get(system, "/auth/devices", renewed["access_token"])
    assert status == 200
    assert [d["id"] for d in devices["data"]["items"]] == [claims_of(phone["access_token"])["sid"]]


# The gateway that served a revocation denies the token itself, without waiting for the stream.
async def test_the_gateway_that_served_a_logout_denies_the_token_at_once(system: Gateway) -> None:
    _, tokens = await registered_and_logged_in(system)
    await _assert_works(system, tokens["access_token"])
    await _stop_following_revocations(system)
    status, _, _ = await post(system, "/auth/logout", {}, token=tokens["access_token"])
    assert status == 204
    await _assert_revoked_at_once(system, tokens["access_token"])


async def test_the_gateway_that_revoked_the_current_device_denies_its_token_at_once(system: Gateway) -> None:
    _, tokens = await registered_and_logged_in(system)
    await _assert_works(system, tokens["access_token"])
    await _stop_following_revocations(system)
    device = claims_of(tokens["access_token"])["sid"]
    status, _ = await delete(system, f"/auth/devices/{device}", tokens["access_token"])
    assert status == 204
    await _assert_revoked_at_once(system, tokens["access_token"])


async def test_the_gateway_that_served_a_logout_all_denies_every_device_at_once(system: Gateway) -> None:
    registered, laptop = await registered_and_logged_in(system)
    phone = await login(system, registered["user"]["email"], device_name="phone")
    await _assert_works(system, phone["access_token"])
    await _stop_following_revocations(system)
    status, _, _ = await post(system, "/auth/logout-all", {}, token=laptop["access_token"])
    assert status == 204
    for tokens in (laptop, phone):
        await _assert_revoked_at_once(system, tokens["access_token"])


async def test_the_gateway_that_served_a_password_change_denies_the_other_devices_at_once(system: Gateway) -> None:
    registered, laptop = await registered_and_logged_in(system)
    phone = await login(system, registered["user"]["email"], device_name="phone")
    await _assert_works(system, phone["access_token"])
    await _stop_following_revocations(system)
    change = {"current_password": PASSWORD, "new_password": "another long password"}
    status, _, _ = await post(system, "/users/me/password", change, token=laptop["access_token"])
    assert status == 204
    await _assert_revoked_at_once(system, phone["access_token"])
    await _assert_works(system, laptop["access_token"])


# Reuse of a spent refresh token revokes that family (device) only.
async def test_a_reused_refresh_token_revokes_only_its_own_device(system: Gateway) -> None:
    registered, laptop = await registered_and_logged_in(system)
    phone = await login(system, registered["user"]["email"], device_name="phone")
    rotated = await _refreshed(system, laptop["refresh_token"])

    status, body, _ = await post(system, "/auth/refresh", {"refresh_token": laptop["refresh_token"]})
    assert status == 401 and body["error"]["code"] == "REFRESH_TOKEN_REUSED"

    for access_token in (laptop["access_token"], rotated["access_token"]):
        assert (await _rejected_eventually(system, access_token))["code"] == "TOKEN_REVOKED"
    status, _, _ = await post(system, "/auth/refresh", {"refresh_token": rotated["refresh_token"]})
    assert status == 401

    # The laptop's revocation has reached the gateway by now: the phone must still be in.
    await _assert_works(system, phone["access_token"])
    renewed = await _refreshed(system, phone["refresh_token"])
    await _assert_works(system, renewed["access_token"])


# A device belongs to a user, not to a tenant.
async def test_a_member_cannot_revoke_a_device_of_another_user_in_the_same_tenant(system: Gateway) -> None:
    _, admin = await registered_and_logged_in(system)
    member = await login(system, (await add_member(system, admin["access_token"]))["email"])
    admin_device = claims_of(admin["access_token"])["sid"]

    status, body = await delete(system, f"/auth/devices/{admin_device}", member["access_token"])
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"

    await _assert_works(system, admin["access_token"])
    renewed = await _refreshed(system, admin["refresh_token"])
    status, devices = await get(system, "/auth/devices", renewed["access_token"])
    assert status == 200 and [d["id"] for d in devices["data"]["items"]] == [admin_device]


async def test_a_device_of_another_tenant_is_not_found(system: Gateway) -> None:
    _, alice = await registered_and_logged_in(system)
    _, bob = await registered_and_logged_in(system)
    status, body = await delete(system, f"/auth/devices/{claims_of(bob['access_token'])['sid']}", alice["access_token"])
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    await _assert_works(system, bob["access_token"])
    await _refreshed(system, bob["refresh_token"])


# Neither a member nor a request without a caller may rotate the signing key (who may is not pinned here).
async def _member_caller(system: Gateway) -> Caller:
    """The identity a member's real access token carries, as the gateway would attach it."""
    _, admin = await registered_and_logged_in(system)
    member = await login(system, (await add_member(system, admin["access_token"]))["email"])
    claims = claims_of(member["access_token"])
    assert claims["roles"] == ["member"]
    return Caller(tenant_id=claims["tid"], user_id=claims["sub"], roles=claims["roles"], session_id=claims["sid"])


async def _signing_keys(system: Gateway) -> list[tuple[str, datetime | None]]:
    keys = await system.services["auth"].ctx.store.run(repo.signing_keys)
    assert keys, "a login should have created the first signing key"
    return [(key.kid, key.retired_at) for key in keys]


async def _assert_rotation_refused(system: Gateway, caller: Caller | None, codes: set[str]) -> None:
    before = await _signing_keys(system)
    reply = await _operator(system).operator_request(api.ROTATE_SIGNING_KEY, api.RotateSigningKey(caller=caller))
    assert not reply.ok and reply.error is not None and reply.error.code in codes, reply
    assert await _signing_keys(system) == before
    tokens = await login(system, (await register(system))["user"]["email"])
    assert jwt.get_unverified_header(tokens["access_token"])["kid"] == before[-1][0]


async def test_a_member_cannot_rotate_the_signing_key(system: Gateway) -> None:
    await _assert_rotation_refused(system, await _member_caller(system), {"FORBIDDEN"})


async def test_a_request_without_a_caller_cannot_rotate_the_signing_key(system: Gateway) -> None:
    await registered_and_logged_in(system)
    await _assert_rotation_refused(system, None, {"UNAUTHORIZED", "FORBIDDEN"})


# By default an account locks after 10 consecutive failures, not later and not earlier.
async def _fail_logins(system: Gateway, email: str, times: int) -> None:
    for _ in range(times):
        status, body, _ = await post(system, "/auth/login", {"email": email, "password": "not the password"})
        assert status == 401 and body["error"]["code"] == "INVALID_CREDENTIALS", body


async def test_ten_wrong_passwords_lock_the_account_by_default(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    await _fail_logins(system, email, 10)
    status, body, headers = await post(system, "/auth/login", {"email": email, "password": PASSWORD})
    assert status == 423 and body["error"]["code"] == "ACCOUNT_LOCKED", body
    retry_after(headers)


async def test_nine_wrong_passwords_do_not_lock_the_account_by_default(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    await _fail_logins(system, email, 9)
    await login(system, email)
