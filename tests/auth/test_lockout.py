"""Brute-force protection: per-account lockout that expires, per-address throttling."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.auth.helpers import PASSWORD, login, post, register, unique_email
from tests.support import Gateway

# A lock a test asserts must outlast the time a loaded machine takes to check it (a 1 s lock could
# expire before its 423 was read); a test that waits for a lock to end polls for it instead of sleeping.
LOCK_SECONDS = 3.0
UNLOCK_DEADLINE_SECONDS = 30.0


@pytest.fixture
def auth_overrides() -> dict[str, Any]:
    return {"lockout_threshold": 3, "lockout_base_seconds": LOCK_SECONDS, "ip_failure_limit": 50}


async def _once_unlocked(system: Gateway, email: str, password: str) -> tuple[int, Any, dict[str, str]]:
    """The first reply to a login that is not refused by the lock (423), polled until a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + UNLOCK_DEADLINE_SECONDS
    while True:
        status, body, headers = await post(system, "/auth/login", {"email": email, "password": password})
        if status != 423:
            return status, body, headers
        assert loop.time() < deadline, "the lock did not end"
        await asyncio.sleep(0.1)


async def test_account_locks_after_threshold_and_unlocks_after_the_window(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    for _ in range(3):
        status, body, _ = await post(system, "/auth/login", {"email": email, "password": "wrong password"})
        assert status == 401 and body["error"]["code"] == "INVALID_CREDENTIALS"
    status, body, headers = await post(system, "/auth/login", {"email": email, "password": PASSWORD})
    assert status == 423 and body["error"]["code"] == "ACCOUNT_LOCKED"
    assert 1 <= int(headers["Retry-After"]) <= LOCK_SECONDS
    status, body, _ = await _once_unlocked(system, email, PASSWORD)
    assert status == 200, body


async def test_the_lock_grows_with_repetition(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    for _ in range(3):
        await post(system, "/auth/login", {"email": email, "password": "wrong password"})
    status, _, headers = await post(system, "/auth/login", {"email": email, "password": PASSWORD})
    assert status == 423 and int(headers["Retry-After"]) <= LOCK_SECONDS
    # The first wrong password after the lock ends is the first failure of the next burst.
    status, _, _ = await _once_unlocked(system, email, "wrong password")
    assert status == 401
    for _ in range(2):
        await post(system, "/auth/login", {"email": email, "password": "wrong password"})
    status, _, headers = await post(system, "/auth/login", {"email": email, "password": PASSWORD})
    assert status == 423 and LOCK_SECONDS < int(headers["Retry-After"]) <= 2 * LOCK_SECONDS


async def test_a_success_resets_the_consecutive_count(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    for _ in range(2):
        await post(system, "/auth/login", {"email": email, "password": "wrong password"})
    await login(system, email)
    for _ in range(2):
        await post(system, "/auth/login", {"email": email, "password": "wrong password"})
    await login(system, email)


@pytest.mark.parametrize("auth_overrides", [{"ip_failure_limit": 4, "lockout_threshold": 100}])
async def test_an_address_with_too_many_failures_is_throttled(system: Gateway, auth_overrides: Any) -> None:
    for _ in range(4):
        status, _, _ = await post(system, "/auth/login", {"email": unique_email(), "password": "guess guess"})
        assert status == 401
    status, body, headers = await post(system, "/auth/login", {"email": unique_email(), "password": "guess"})
    assert status == 429 and body["error"]["code"] == "RATE_LIMITED"
    assert int(headers["Retry-After"]) > 0


async def test_parallel_guesses_cannot_get_past_the_limit(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    results = await asyncio.gather(
        *(post(system, "/auth/login", {"email": email, "password": f"guess number {i}"}) for i in range(12))
    )
    statuses = [status for status, _, _ in results]
    assert statuses.count(401) == 3, statuses
    assert set(statuses) - {401} <= {423, 429}, statuses
    status, body, _ = await post(system, "/auth/login", {"email": email, "password": PASSWORD})
    assert status == 423 and body["error"]["code"] == "ACCOUNT_LOCKED"


async def test_parallel_correct_logins_beyond_the_limit_are_deferred_not_locked(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    results = await asyncio.gather(
        *(post(system, "/auth/login", {"email": email, "password": PASSWORD}) for _ in range(8))
    )
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) >= 3 and set(statuses) <= {200, 429}, statuses
    await login(system, email)


async def test_a_success_after_failures_below_the_limit_resets_them(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    for _ in range(2):
        await post(system, "/auth/login", {"email": email, "password": "wrong password"})
    await login(system, email)
    await login(system, email)


async def test_guessing_the_current_password_meets_the_lockout(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    tokens = await login(system, email)
    change = {"current_password": "not it at all", "new_password": "a brand new password"}
    for _ in range(3):
        status, body, _ = await post(system, "/users/me/password", change, token=tokens["access_token"])
        assert status == 401 and body["error"]["code"] == "INVALID_CREDENTIALS"
    status, body, headers = await post(system, "/users/me/password", change, token=tokens["access_token"])
    assert status == 423 and int(headers["Retry-After"]) >= 1
