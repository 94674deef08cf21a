"""A shared address must not lock people out: a device token from an earlier login of the account
exempts that account's logins from the per-address throttle (and only that account's), with real
Argon2id at the default parameters and the default limit of 100 failures per address."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from services.auth.device_tokens import sign
from tests.auth.helpers import PASSWORD, login, post, register, unique_email
from tests.support import Gateway


async def _fail_from_this_address(system: Gateway, times: int) -> None:
    """Wrong passwords for unknown accounts from 127.0.0.1 (no account lockout gets involved)."""
    for start in range(0, times, 10):
        results = await asyncio.gather(
            *(
                post(system, "/auth/login", {"email": unique_email("nobody"), "password": "a wrong guess"})
                for _ in range(min(10, times - start))
            )
        )
        assert [status for status, _, _ in results] == [401] * len(results), results


async def _login(system: Gateway, email: str, password: str = PASSWORD, **extra: Any) -> tuple[int, Any]:
    status, body, _ = await post(system, "/auth/login", {"email": email, "password": password, **extra})
    return status, body


async def test_a_device_token_gets_its_account_past_a_throttled_address(system: Gateway) -> None:
    alice, bob = unique_email("alice"), unique_email("bob")
    await register(system, alice)
    await register(system, bob)
    alice_token = (await login(system, alice))["device_token"]
    bob_token = (await login(system, bob))["device_token"]
    assert alice_token and bob_token and alice_token != bob_token

    await _fail_from_this_address(system, 100)

    status, body = await _login(system, alice)
    assert status == 429 and body["error"]["code"] == "RATE_LIMITED", body
    status, body = await _login(system, alice, device_token=alice_token)
    assert status == 200, body
    assert body["data"]["device_token"], "a login with a device token hands out a fresh one"
    # Alice's token does not exempt a login to Bob's account; Bob's own does.
    status, body = await _login(system, bob, device_token=alice_token)
    assert status == 429 and body["error"]["code"] == "RATE_LIMITED", body
    status, body = await _login(system, bob, device_token=bob_token)
    assert status == 200, body


async def test_invalid_device_tokens_are_ignored_without_saying_so(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    genuine = (await login(system, email))["device_token"]
    await _fail_from_this_address(system, 100)
    kid, user_hex, expires = genuine.split(".")[1:4]
    forged = [
        "",
        "garbage",
        "dt1.x.y.z.w",
        genuine[:-4] + ("AAAA" if not genuine.endswith("AAAA") else "BBBB"),  # a wrong MAC
        f"dt1.{kid}.{user_hex}.{int(expires) + 1}.{genuine.rsplit('.', 1)[1]}",  # a longer life, same MAC
        sign(kid, b"\x00" * 32, uuid.UUID(hex=user_hex), int(expires)),  # signed with a guessed key
        "dt1." + "a" * 400,
    ]
    replies = [await _login(system, email, device_token=token) for token in forged]
    for status, body in replies:
        assert status == 429 and body["error"]["code"] == "RATE_LIMITED", body
    # The same answer as no token at all: nothing tells a forger which part was wrong.
    status, body = await _login(system, email)
    assert status == 429
    assert {b["error"]["message"] for _, b in replies} == {body["error"]["message"]}


async def test_an_oversized_device_token_is_a_validation_error(system: Gateway) -> None:
    status, body = await _login(system, unique_email(), device_token="x" * 600)
    assert status == 422 and body["error"]["code"] == "VALIDATION_FAILED"


@pytest.mark.parametrize("auth_overrides", [{"lockout_threshold": 3, "lockout_base_seconds": 30.0}])
async def test_a_device_token_holder_is_still_held_by_the_account_lockout(
    system: Gateway, auth_overrides: dict[str, Any]
) -> None:
    email = unique_email()
    await register(system, email)
    token = (await login(system, email))["device_token"]
    for _ in range(3):
        status, body = await _login(system, email, "a wrong guess", device_token=token)
        assert status == 401, body
    status, body = await _login(system, email, device_token=token)
    assert status == 423 and body["error"]["code"] == "ACCOUNT_LOCKED", body


@pytest.mark.parametrize("auth_overrides", [{"ip_failure_limit": 3}])
async def test_failures_with_a_device_token_do_not_count_against_the_address(
    system: Gateway, auth_overrides: dict[str, Any]
) -> None:
    email = unique_email()
    await register(system, email)
    token = (await login(system, email))["device_token"]
    for _ in range(3):
        status, _ = await _login(system, email, "a wrong guess", device_token=token)
        assert status == 401
    # The address has no failures on record: anyone else behind it may still try.
    status, body = await _login(system, email)
    assert status == 200, body
