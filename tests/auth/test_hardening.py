"""Regressions from the auth security review, each reproduced on the real system (real NATS, the
real store, real Argon2id): leaked lockout leases, logins racing a password change, failures to
publish after a commit, sign-up floods, and who an audit event names as the actor."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import jwt
import orjson
import pytest

from contracts import auth as api
from contracts import subjects
from contracts.identity import ClientInfo
from services.auth import repository as repo
from services.auth.context import AuthContext
from services.auth.login import login as login_use_case
from shared.errors import ServiceError
from shared.store import Transaction
from tests.auth.helpers import PASSWORD, get, login, post, register, registered_and_logged_in, unique_email
from tests.support import Gateway

FAST_HASH = {"argon2_memory_kib": 1024, "argon2_time_cost": 1}


def _auth(system: Gateway) -> AuthContext:
    auth: AuthContext = system.services["auth"].ctx.components["auth"]
    return auth


async def _failures(system: Gateway, email: str) -> Any:
    def read(tx: Transaction) -> Any:
        user = repo.user_by_email(tx, email.lower())
        assert user is not None
        return repo.get_failures(tx, user.id)

    return await _auth(system).store.run(read)


async def _eventually(check: Any, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


# Lockout leases.
@pytest.mark.parametrize(
    "auth_overrides",
    [{"hash_workers": 1, "hash_queue_limit": 1, "hash_login_reserve": 0, "lockout_threshold": 3}],
)
async def test_a_full_hash_pool_never_leaves_the_account_locked_for_good(
    system: Gateway, auth_overrides: dict[str, Any]
) -> None:
    email = unique_email()
    await register(system, email)
    # Registrations keep the one-thread pool busy while correct logins pile up behind them.
    storm = [post(system, "/auth/register", {"email": unique_email(), "password": PASSWORD}) for _ in range(6)]
    storm += [post(system, "/auth/login", {"email": email, "password": PASSWORD}) for _ in range(12)]
    statuses = [status for status, _, _ in await asyncio.gather(*storm)]
    assert 429 in statuses, statuses  # the pool really was full

    async def logged_in() -> bool:
        status, _, _ = await post(system, "/auth/login", {"email": email, "password": PASSWORD})
        return status == 200

    assert await _eventually(logged_in), "the account stays refused after the pool drained"
    assert (await _failures(system, email)).leases == {}


async def test_an_attempt_that_ends_without_a_verdict_gives_its_lease_back(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    auth = _auth(system)
    real_verify = auth.hashing.verify

    async def broken_verify(stored_hash: str | None, password: str) -> bool:
        raise RuntimeError("the hash pool broke")

    auth.hashing.verify = broken_verify  # type: ignore[method-assign]
    try:
        for _ in range(auth.settings.lockout_threshold + 2):
            with pytest.raises(RuntimeError):
                await login_use_case(auth, api.Login(email=email, password=PASSWORD, client=ClientInfo(ip="10.0.0.1")))
    finally:
        auth.hashing.verify = real_verify  # type: ignore[method-assign]
    assert (await _failures(system, email)).leases == {}
    await login(system, email)


async def test_a_cancelled_attempt_gives_its_lease_back(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    auth = _auth(system)
    real_verify = auth.hashing.verify
    entered = asyncio.Event()

    async def hanging_verify(stored_hash: str | None, password: str) -> bool:
        entered.set()
        await asyncio.sleep(3600)
        return False

    auth.hashing.verify = hanging_verify  # type: ignore[method-assign]
    try:
        task = asyncio.create_task(login_use_case(auth, api.Login(email=email, password=PASSWORD)))
        await entered.wait()
        assert len((await _failures(system, email)).leases) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        auth.hashing.verify = real_verify  # type: ignore[method-assign]
    assert await _eventually(lambda: _no_leases(system, email))


async def _no_leases(system: Gateway, email: str) -> bool:
    return (await _failures(system, email)).leases == {}


# Credentials checked are credentials used.
async def test_a_login_in_flight_during_a_password_change_is_refused(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    tokens = await login(system, email)
    auth = _auth(system)
    real_verify = auth.hashing.verify
    checked, release = asyncio.Event(), asyncio.Event()

    async def slow_verify(stored_hash: str | None, password: str) -> bool:
        ok = await real_verify(stored_hash, password)
        if not checked.is_set():
            checked.set()
            await release.wait()
        return ok

    auth.hashing.verify = slow_verify  # type: ignore[method-assign]
    try:
        old_password_login = asyncio.create_task(
            post(system, "/auth/login", {"email": email, "password": PASSWORD, "device_name": "attacker"})
        )
        await checked.wait()  # the old password has been found correct...
        auth.hashing.verify = real_verify  # type: ignore[method-assign]
        change = {"current_password": PASSWORD, "new_password": "a completely new password"}
        status, body, _ = await post(system, "/users/me/password", change, token=tokens["access_token"])
        assert status == 204, body
        release.set()  # ...and only now does its login try to open a family
        status, body, _ = await old_password_login
    finally:
        auth.hashing.verify = real_verify  # type: ignore[method-assign]
        release.set()
    assert status == 401
    assert body["error"]["code"] == "INVALID_CREDENTIALS"
    status, devices = await get(system, "/auth/devices", tokens["access_token"])
    assert status == 200
    assert [d["device_name"] for d in devices["data"]["items"]] == [None]


# Publishing after a commit.
async def _delete_events_stream(system: Gateway) -> Any:
    js = await system.admin_js()
    await js.delete_stream(subjects.EVENTS_STREAM)
    return js


async def test_a_refresh_and_a_logout_succeed_when_events_cannot_be_published(system: Gateway) -> None:
    from shared.bus import create_streams

    _, tokens = await registered_and_logged_in(system)
    js = await _delete_events_stream(system)
    status, body, _ = await post(system, "/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    assert status == 200, body
    fresh = body["data"]
    status, _, _ = await post(system, "/auth/logout", {}, token=fresh["access_token"])
    assert status == 204
    status, body = await get(system, "/users/me", fresh["access_token"])
    assert status == 401  # the gateway that served the logout denies at once, stream or not
    await create_streams(js)

    async def delivered() -> bool:
        try:
            await js.get_last_msg(subjects.EVENTS_STREAM, "evt.auth.token_refreshed")
        except Exception:
            return False
        return True

    assert await _eventually(delivered), "the outbox never delivered the staged events"


async def test_an_undecodable_outbox_row_does_not_block_the_events_behind_it(system: Gateway) -> None:
    auth = _auth(system)
    bad_key = repo.OUTBOX.pack((1, "not-an-event"))
    await auth.store.run(lambda tx: tx.set(bad_key, b"\xff not json"))
    _, tokens = await registered_and_logged_in(system)
    js = await system.admin_js()

    async def delivered() -> bool:
        try:
            last = await js.get_last_msg(subjects.EVENTS_STREAM, "evt.auth.login_succeeded")
        except Exception:
            return False
        return (
            orjson.loads(last.data)["data"]["session_id"]
            == jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]
        )

    assert await _eventually(delivered)
    assert await auth.store.run(lambda tx: tx.get(bad_key)) is None
    dead = repo.OUTBOX_DEAD_LETTER.pack((1, "not-an-event"))
    assert await auth.store.run(lambda tx: tx.get(dead)) == b"\xff not json"


# Sign-up limits.
@pytest.mark.parametrize("auth_overrides", [{"register_address_limit": 2, **FAST_HASH}])
async def test_sign_ups_from_one_address_are_limited(system: Gateway, auth_overrides: dict[str, Any]) -> None:
    for _ in range(2):
        await register(system)
    status, body, headers = await post(system, "/auth/register", {"email": unique_email(), "password": PASSWORD})
    assert status == 429
    assert body["error"]["code"] == "RATE_LIMITED"
    assert int(headers["Retry-After"]) > 60


@pytest.mark.parametrize("auth_overrides", [{"register_global_limit": 3, **FAST_HASH}])
async def test_sign_ups_are_limited_overall(system: Gateway, auth_overrides: dict[str, Any]) -> None:
    auth = _auth(system)
    for n in range(3):
        await registration_from(auth, f"10.1.0.{n}")
    with pytest.raises(ServiceError) as refused:
        await registration_from(auth, "10.1.0.99")
    assert refused.value.code == "RATE_LIMITED"
    assert refused.value.retry_after is not None
    assert refused.value.retry_after >= 1


async def registration_from(auth: AuthContext, ip: str) -> None:
    from services.auth.registration import register as register_use_case

    await register_use_case(auth, api.Register(email=unique_email(), password=PASSWORD, client=ClientInfo(ip=ip)))


async def test_sign_ups_cannot_take_the_hash_capacity_kept_for_logins() -> None:
    from services.auth.passwords import PasswordHashing

    hashing = PasswordHashing(memory_kib=1024, time_cost=1, parallelism=1, workers=1, queue_limit=3, login_reserve=2)
    gate = threading.Event()
    try:
        # Two sign-ups' hashes hold the pool (one running, one queued): four places, two kept for logins.
        busy = [asyncio.create_task(hashing._run(gate.wait, for_login=False)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(ServiceError) as refused:
            await hashing.hash("password three")
        assert refused.value.code == "RATE_LIMITED"
        assert hashing.has_capacity(for_login=True)
        login_check = asyncio.create_task(hashing.verify(None, "whatever"))
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(*busy)
        assert await login_check is False
    finally:
        gate.set()
        hashing.close()


# Who the audit trail names.
async def test_a_failed_login_names_the_unknown_party_as_actor_and_the_account_as_target(system: Gateway) -> None:
    registered = await register(system)
    email = registered["user"]["email"]
    status, _, _ = await post(system, "/auth/login", {"email": email, "password": "not the password"})
    assert status == 401
    js = await system.admin_js()

    async def failed_event() -> Any:
        try:
            last = await js.get_last_msg(subjects.EVENTS_STREAM, "evt.auth.login_failed")
        except Exception:
            return None
        return orjson.loads(last.data)

    event = await _eventually(failed_event)
    assert event["actor"]["user_id"] is None
    assert event["actor"]["ip"] == "127.0.0.1"
    assert event["target"] == f"user:{registered['user']['id']}"


# Token lifetime at the edge.
async def test_a_token_living_longer_than_the_access_ttl_is_refused(system: Gateway) -> None:
    _, tokens = await registered_and_logged_in(system)
    key = await _auth(system).keyring.active()
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    now = int(time.time())
    long_lived = jwt.encode(
        {**claims, "iat": now, "exp": now + 3600, "jti": str(uuid.uuid4())},
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid},
    )
    status, body = await get(system, "/users/me", long_lived)
    assert status == 401
    assert body["error"]["code"] == "UNAUTHORIZED"
    normal = jwt.encode(
        {**claims, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())},
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid},
    )
    assert (await get(system, "/users/me", normal))[0] == 200
