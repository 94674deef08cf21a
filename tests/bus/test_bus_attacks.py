"""The three attacks an open bus allowed (issue 12), replayed from plain ``nats.connect`` clients
against the whole system on the generated configuration: each fails now."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import jwt
import nats as nats_client
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.msg import Msg

from contracts import auth
from contracts.identity import Caller
from shared import bus
from shared.callerproof import HEADER, CallerSigner, new_signing_key
from tests.auth.helpers import PASSWORD, claims_of, get, registered_and_logged_in, unique_email
from tests.bus.test_permissions import assert_subscribe_refused, connected
from tests.support import Gateway, NatsServer, connection_refusal


def forged_admin(tenant_id: Any) -> Caller:
    return Caller(tenant_id=tenant_id, user_id=uuid.uuid4(), roles=["admin"], session_id=uuid.uuid4())


async def tenant_emails(system: Gateway, admin_token: str) -> set[str]:
    status, body = await get(system, "/tenants/me/users", admin_token)
    assert status == 200, body
    return {user["email"] for user in body["data"]["items"]}


def add_user_request(tenant_id: Any, email: str) -> auth.AddTenantUser:
    return auth.AddTenantUser(caller=forged_admin(tenant_id), email=email, password=PASSWORD, role="admin")


async def test_a_forged_admin_caller_never_creates_a_user(
    system: Gateway, nats: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    _, tokens = await registered_and_logged_in(system)
    tenant_id = claims_of(tokens["access_token"])["tid"]
    intruder = unique_email("intruder")

    # 1. No credentials: the connection itself is refused.
    assert await connection_refusal(nats.client_url) is not None

    # 2. Another process's identity: it may not send auth's requests (no one answers it).
    async with connected(nats, "file_event") as other:
        assert other.client is not None
        reply = await bus.request(other.client, auth.ADD_TENANT_USER, add_user_request(tenant_id, intruder), timeout=1)
        assert not reply.ok
        assert await other.was_refused(auth.ADD_TENANT_USER, "publish")

    # 3. An identity whose permissions are too wide (test-admin may publish anything): the service
    # refuses the caller before any handler sees it, and says which identity it refused.
    admin = await nats_client.connect(nats.url, inbox_prefix="_INBOX.test-admin")
    try:
        with caplog.at_level(logging.WARNING, logger="shared.dispatch"):
            reply = await bus.request(admin, auth.ADD_TENANT_USER, add_user_request(tenant_id, intruder), timeout=2)
            # Its own caller key does not help either: only the gateway's and the operator's count.
            own = CallerSigner(new_signing_key())
            caller = forged_admin(tenant_id)
            signed = await bus.request(
                admin,
                auth.ADD_TENANT_USER,
                auth.AddTenantUser(caller=caller, email=intruder, password=PASSWORD),
                timeout=2,
                headers={HEADER: own.assertion(caller)},
            )
    finally:
        await admin.close()
    for refused in (reply, signed):
        assert not refused.ok and refused.error is not None
        assert refused.error.code == "CALLER_UNVERIFIED"
    assert "bus identity test-admin" in caplog.text
    assert intruder not in await tenant_emails(system, tokens["access_token"])


async def test_nobody_but_auth_reads_passwords_or_tokens_off_the_bus(system: Gateway, nats: NatsServer) -> None:
    heard: list[bytes] = []

    async def keep(message: Msg) -> None:
        heard.append(message.data)

    async with connected(nats, "session") as sniffer, connected(nats, "file_event") as other:
        await assert_subscribe_refused(nats, sniffer, auth.LOGIN, auth.LOGIN)
        await assert_subscribe_refused(nats, sniffer, "_INBOX.>", "_INBOX.gateway.x.y")
        await assert_subscribe_refused(nats, other, "_INBOX.gateway.>", "_INBOX.gateway.x.y")
        await assert_subscribe_refused(nats, other, "rpc.>", auth.LOGIN)
        for identity in (sniffer, other):
            assert identity.client is not None
            for subject in (auth.LOGIN, "_INBOX.>", "rpc.>", ">"):
                await identity.client.subscribe(subject, cb=keep)
        email = unique_email()
        status, body, _ = await _register_and_login(system, email)
        assert status == 200, body
        await asyncio.sleep(0.3)
    assert heard == [], "a process other than auth read a login or its reply"


async def _register_and_login(system: Gateway, email: str) -> Any:
    from tests.auth.helpers import post, register

    await register(system, email)
    return await post(system, "/auth/login", {"email": email, "password": PASSWORD})


async def test_nobody_but_auth_answers_for_the_signing_keys(system: Gateway, nats: NatsServer) -> None:
    attacker_key = Ed25519PrivateKey.generate()
    async with connected(nats, "session") as impostor:
        await assert_subscribe_refused(nats, impostor, auth.GET_JWKS, auth.GET_JWKS)
    _, tokens = await registered_and_logged_in(system)
    claims = claims_of(tokens["access_token"])
    now = int(time.time())
    forged = jwt.encode(
        {**claims, "roles": ["admin"], "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())},
        attacker_key,
        algorithm="EdDSA",
        headers={"kid": "attacker"},
    )
    status, body = await get(system, "/users/me", forged)
    assert status == 401, body
    # The real token still works: the key set was not replaced.
    status, _ = await get(system, "/users/me", tokens["access_token"])
    assert status == 200
