"""Access-token attacks at the gateway, key rotation, and what events carry."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import auth as api
from contracts import subjects
from contracts.identity import Caller
from services.auth import keyring
from services.auth import repository as repo
from services.auth.app import key_encryption_key
from services.auth.keys import SigningKey, open_signing_key
from services.auth.settings import AuthSettings
from shared.telemetry import JsonFormatter
from tests.auth.helpers import PASSWORD, add_member, get, login, post, register, registered_and_logged_in, unique_email
from tests.support import Gateway, NatsServer


def _operator(system: Gateway) -> NatsServer:
    """Rotation is operator-only on the bus: the gateway may not even send it."""
    assert system.nats is not None
    return system.nats


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def auth_overrides() -> dict[str, Any]:
    return {"signing_key_rotation_min_interval_seconds": 0}


async def _signing_keys(system: Gateway) -> list[SigningKey]:
    """The stored keys, opened with the service's KEK as the service opens them."""
    ctx = system.services["auth"].ctx
    assert isinstance(ctx.settings, AuthSettings)
    kek = key_encryption_key(ctx.settings)
    keys = await ctx.store.run(repo.signing_keys)
    for key in keys:
        open_signing_key(key, kek)
    return keys


async def _claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def _rejected(system: Gateway, token: str) -> dict[str, Any]:
    status, body = await get(system, "/users/me", token)
    assert status == 401, body
    return dict(body["error"])


async def test_alg_none_is_rejected(system: Gateway) -> None:
    _, tokens = await registered_and_logged_in(system)
    claims = await _claims_of(tokens["access_token"])
    header = {"alg": "none", "typ": "JWT", "kid": jwt.get_unverified_header(tokens["access_token"])["kid"]}
    forged = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
    assert (await _rejected(system, forged))["code"] == "UNAUTHORIZED"


async def test_hs256_signed_with_the_public_key_is_rejected(system: Gateway) -> None:
    _, tokens = await registered_and_logged_in(system)
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    async with system.session.get(f"{system.api}/auth/jwks") as response:
        jwks = await response.json()
    public = next(k for k in jwks["keys"] if k["kid"] == kid)
    claims = await _claims_of(tokens["access_token"])
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    import hashlib
    import hmac

    for secret in (json.dumps(public).encode(), base64.urlsafe_b64decode(public["x"] + "==")):
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        await _rejected(system, f"{signing_input}.{_b64(signature)}")


async def test_a_tampered_payload_is_rejected(system: Gateway) -> None:
    _, tokens = await registered_and_logged_in(system)
    header, payload, signature = tokens["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["roles"] = ["admin", "superuser"]
    claims["tid"] = str(uuid.uuid4())
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    await _rejected(system, forged)


async def test_expired_wrong_audience_and_wrong_issuer_are_rejected(system: Gateway) -> None:
    _, tokens = await registered_and_logged_in(system)
    key = (await _signing_keys(system))[-1]
    claims = await _claims_of(tokens["access_token"])
    now = int(time.time())

    def signed(**changes: Any) -> str:
        return jwt.encode({**claims, **changes}, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})

    assert (await _rejected(system, signed(iat=now - 900, exp=now - 120)))["code"] == "TOKEN_EXPIRED"
    await _rejected(system, signed(aud="someone-else"))
    await _rejected(system, signed(iss="evil"))
    without_sid = {k: v for k, v in claims.items() if k != "sid"}
    await _rejected(system, jwt.encode(without_sid, key.private_key, algorithm="EdDSA", headers={"kid": key.kid}))
    # Inside the leeway an expired token still passes (clock skew between machines).
    status, _ = await get(system, "/users/me", signed(exp=now - 5))
    assert status == 200


async def test_unknown_kid_and_garbage_tokens_are_rejected(system: Gateway) -> None:
    _, tokens = await registered_and_logged_in(system)
    claims = await _claims_of(tokens["access_token"])
    stranger = Ed25519PrivateKey.generate()
    forged = jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": "unknown-kid"})
    assert "unknown key" in (await _rejected(system, forged))["message"]
    own_kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    impostor = jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": own_kid})
    await _rejected(system, impostor)
    for garbage in ("abc", "a.b.c", "", "....", "eyJhbGciOiJFZERTQSJ9.e30."):
        status, body = await get(system, "/users/me", garbage or " ")
        assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"


async def test_rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key(
    system: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the hand-over the new key signs at once (tests/unit/test_keyring.py covers the hand-over).
    monkeypatch.setattr(keyring, "HANDOVER", timedelta(0))
    registered, before = await registered_and_logged_in(system)
    old_kid = jwt.get_unverified_header(before["access_token"])["kid"]
    caller = Caller(
        tenant_id=registered["tenant"]["id"],
        user_id=registered["user"]["id"],
        roles=["operator"],
        session_id=uuid.uuid4(),
    )
    reply = await _operator(system).operator_request(api.ROTATE_SIGNING_KEY, api.RotateSigningKey(caller=caller))
    assert reply.ok, reply
    new_kid = reply.result["kid"]
    assert new_kid != old_kid
    async with system.session.get(f"{system.api}/auth/jwks") as response:
        kids = {k["kid"] for k in (await response.json())["keys"]}
    assert {old_kid, new_kid} <= kids
    assert (await get(system, "/users/me", before["access_token"]))[0] == 200
    status, body, _ = await post(system, "/auth/login", {"email": registered["user"]["email"], "password": PASSWORD})
    assert status == 200
    after = body["data"]["access_token"]
    assert jwt.get_unverified_header(after)["kid"] == new_kid
    assert (await get(system, "/users/me", after))[0] == 200


async def test_rotation_needs_an_admin(system: Gateway) -> None:
    _, admin = await registered_and_logged_in(system)
    member = await login(system, (await add_member(system, admin["access_token"]))["email"])
    claims = await _claims_of(member["access_token"])
    caller = Caller(tenant_id=claims["tid"], user_id=claims["sub"], roles=claims["roles"], session_id=claims["sid"])
    assert caller.roles == ["member"]
    kids = [key.kid for key in await _signing_keys(system)]
    reply = await _operator(system).operator_request(api.ROTATE_SIGNING_KEY, api.RotateSigningKey(caller=caller))
    assert reply.error is not None and reply.error.code == "FORBIDDEN"
    assert [key.kid for key in await _signing_keys(system)] == kids


async def test_rotation_needs_an_authenticated_caller(system: Gateway) -> None:
    reply = await _operator(system).operator_request(api.ROTATE_SIGNING_KEY, api.RotateSigningKey())
    assert reply.error is not None and reply.error.code == "UNAUTHORIZED"


async def _events(system: Gateway) -> list[dict[str, Any]]:
    js = await system.admin_js()
    subscription = await js.subscribe("evt.auth.>", ordered_consumer=True)
    events = []
    try:
        while True:
            message = await subscription.next_msg(timeout=0.5)
            events.append(orjson.loads(message.data))
    except TimeoutError:
        pass
    finally:
        await subscription.unsubscribe()
    return events


async def test_events_are_published_and_never_carry_secrets(system: Gateway) -> None:
    registered, tokens = await registered_and_logged_in(system)
    email = registered["user"]["email"]
    await post(system, "/auth/login", {"email": email, "password": "the wrong password"})
    status, body, _ = await post(system, "/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    assert status == 200
    await post(system, "/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    await asyncio.sleep(0.2)
    events = await _events(system)
    mine = [e for e in events if e["tenant_id"] == registered["tenant"]["id"]]
    types = {e["type"] for e in mine}
    assert {
        api.USER_REGISTERED,
        api.LOGIN_SUCCEEDED,
        api.LOGIN_FAILED,
        api.TOKEN_REFRESHED,
        api.REFRESH_TOKEN_REUSED,
        api.SESSION_REVOKED,
    } <= types
    assert all(e["id"] and e["occurred_at"] for e in mine)
    text = json.dumps(events)
    for secret in (
        PASSWORD,
        "the wrong password",
        tokens["refresh_token"],
        body["data"]["refresh_token"],
        "$argon2id$",
    ):
        assert secret not in text
    assert subjects.EVENTS_STREAM


class _Captured(logging.Handler):
    """Keeps every record, and each one as the services' JSON log line (shared.telemetry)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.json = JsonFormatter("test")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.json.format(record))


@pytest.fixture
def service_logs() -> Iterator[_Captured]:
    """Every record any logger emits, at DEBUG and up, from before the system starts.

    Request it ahead of ``system``. caplog saw nothing: serving a request logs nothing at any
    level, and what the services do log (start, stop, lost connections) happens in fixture set-up
    and teardown, outside the call phase caplog reports, while the root logger is at WARNING.
    faststream's logger does not propagate to the root, so it gets the handler too.
    """
    captured = _Captured()
    root = logging.getLogger()
    own = [root] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    level = root.level
    root.setLevel(logging.DEBUG)
    for logger in own:
        logger.addHandler(captured)
    try:
        yield captured
    finally:
        for logger in own:
            logger.removeHandler(captured)
        root.setLevel(level)


async def test_logs_never_carry_passwords_tokens_or_hashes(service_logs: _Captured, system: Gateway) -> None:
    email = unique_email()
    registered = await register(system, email)
    tokens = await login(system, email)
    await post(system, "/auth/login", {"email": email, "password": "a wrong secret pw"})
    await post(system, "/auth/login", {"email": unique_email(), "password": "some secret pw"})
    status, body, _ = await post(system, "/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    assert status == 200
    rotated = body["data"]
    await post(system, "/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    second = await login(system, email)
    change = {"current_password": PASSWORD, "new_password": "the next secret pw"}
    assert (await post(system, "/users/me/password", change, token=second["access_token"]))[0] == 204
    user_id = uuid.UUID(registered["user"]["id"])
    user = await system.services["auth"].ctx.store.run(lambda tx: repo.get_user(tx, user_id))
    assert user is not None
    # Its stop lines are part of what the auth service logs.
    await system.services["auth"].shutdown()

    records = service_logs.records
    assert records, "no log record was captured"
    assert any(r.name.startswith(("services.", "shared.")) for r in records), [r.name for r in records]
    assert any("auth is serving" in r.getMessage() for r in records)
    for line in service_logs.lines:
        assert json.loads(line)["msg"] is not None
    text = "\n".join([*(r.getMessage() + repr(r.__dict__) for r in records), *service_logs.lines])
    secrets = [PASSWORD, "a wrong secret pw", "some secret pw", "the next secret pw", user.password_hash, "$argon2"]
    for pair in (tokens, rotated, second):
        secrets += [pair["access_token"], pair["refresh_token"]]
    for secret in secrets:
        assert secret not in text
