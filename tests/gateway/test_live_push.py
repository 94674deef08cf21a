"""Live push over ``GET /ws`` on the real system (real NATS, real auth, real tokens): each user's
socket gets that user's session events and nobody else's, the token is checked like HTTP's and its
revocation or expiry ends the socket, and a client that stops reading is cut with bounded memory."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import aiohttp
import jwt
import orjson
import pytest
from aiohttp import WSMsgType
from yarl import URL

from contracts.events import Actor, Event
from services.gateway.app import BASE_PATH, all_routes
from services.gateway.live import LIVE_KEY, LiveHub
from services.gateway.openapi import build_openapi
from services.gateway.revocations import RevocationFollower
from services.gateway.settings import GatewaySettings
from shared.bus import publish_event
from tests.auth.helpers import add_member, claims_of, login, post, registered_and_logged_in
from tests.support import Gateway, NatsServer, free_port, running_gateway

SEND_QUEUE = 32
MAX_SOCKETS = 3
MAX_UNAUTHENTICATED = 3
# Generous for a loaded 2-core machine; a socket that must stay silent is watched this long.
DEADLINE = 10.0
QUIET = 1.0


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {
        "live_send_queue": SEND_QUEUE,
        "live_max_sockets_per_user": MAX_SOCKETS,
        "live_auth_timeout_seconds": 1.0,
        "live_max_client_message_bytes": 4096,
        "live_max_unauthenticated_sockets": MAX_UNAUTHENTICATED,
    }


class User:
    def __init__(self, tokens: dict[str, Any]) -> None:
        self.tokens = tokens
        self.token: str = tokens["access_token"]
        self.id = UUID(tokens["user"]["id"])
        self.tenant_id = UUID(tokens["user"]["tenant_id"])


async def _users(system: Gateway) -> tuple[User, User, User]:
    """A (admin of tenant 1), B (member of tenant 1) and C (admin of tenant 2)."""
    _, a = await registered_and_logged_in(system)
    member = await add_member(system, a["access_token"])
    b = await login(system, member["email"])
    _, c = await registered_and_logged_in(system)
    return User(a), User(b), User(c)


def session_event(event_type: str, tenant_id: UUID, user_id: UUID, padding: int = 0) -> Event:
    """A session event as the session service publishes it: the owner's tenant, ``data.user_id``
    and ``data.session``."""
    now = datetime.now(UTC).isoformat()
    session_id = str(uuid.uuid4())
    session = {
        "id": session_id,
        "tenant_id": str(tenant_id),
        "user_id": str(user_id),
        "name": "x" * padding or "notebook",
        "workspace_path": None,
        "status": "active",
        "parent_session_id": None,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "last_accessed_at": now,
    }
    return Event(
        type=event_type,
        tenant_id=tenant_id,
        actor=Actor(kind="human", user_id=user_id),
        target=f"session:{session_id}",
        data={"user_id": str(user_id), "session": session},
    )


async def publish(system: Gateway, event: Event) -> None:
    await publish_event(system.services["session"].ctx.broker, event)


def ws_url(gateway: Gateway, token: str | None = None) -> str:
    url = f"{gateway.api}/ws".replace("http://", "ws://")
    return f"{url}?access_token={token}" if token else url


async def connect(
    gateway: Gateway, user: User, *, via: aiohttp.ClientSession | None = None
) -> aiohttp.ClientWebSocketResponse:
    """A socket of ``user``, authenticated by the query parameter; returned once it is ready."""
    ws = await (via or gateway.session).ws_connect(ws_url(gateway, user.token))
    ready = await next_push(ws)
    assert ready["type"] == "live.ready", ready
    assert ready["data"]["user_id"] == str(user.id) and ready["data"]["tenant_id"] == str(user.tenant_id)
    return ws


async def next_push(ws: aiohttp.ClientWebSocketResponse, timeout: float = DEADLINE) -> dict[str, Any]:
    message = await ws.receive(timeout=timeout)
    assert message.type is WSMsgType.TEXT, message
    return dict(orjson.loads(message.data))


async def nothing_within(ws: aiohttp.ClientWebSocketResponse, seconds: float = QUIET) -> None:
    try:
        message = await ws.receive(timeout=seconds)
    except TimeoutError:
        return
    pytest.fail(f"expected nothing, got {message}")


async def closed_with(ws: aiohttp.ClientWebSocketResponse, seconds: float = DEADLINE) -> tuple[int, str]:
    """The close code and reason the server sent, within ``seconds`` (pushes before it are skipped)."""
    deadline = time.monotonic() + seconds
    while True:
        message = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        if message.type is WSMsgType.CLOSE:
            return int(message.data), str(message.extra)
        assert message.type is WSMsgType.TEXT, message


def hub_of(gateway: Gateway) -> LiveHub:
    return gateway.app[LIVE_KEY]


async def test_a_session_event_reaches_its_owner_and_nobody_else(system: Gateway) -> None:
    a, b, c = await _users(system)
    socket_a, socket_b, socket_c = [await connect(system, user) for user in (a, b, c)]

    created = session_event("session.created", a.tenant_id, a.id)
    await publish(system, created)
    push = await next_push(socket_a)
    assert push["type"] == "session.created"
    assert push["id"] == str(created.id)
    assert push["data"] == created.data
    await nothing_within(socket_b)
    await nothing_within(socket_c, 0.1)

    # Same user id, another tenant: never delivered across tenants.
    await publish(system, session_event("session.updated", c.tenant_id, a.id))
    for event_type in ("session.updated", "session.forked", "session.deleted"):
        await publish(system, session_event(event_type, b.tenant_id, b.id))
        assert (await next_push(socket_b))["type"] == event_type
    await nothing_within(socket_a)
    await nothing_within(socket_c, 0.1)


async def test_the_token_may_come_in_the_first_message(system: Gateway) -> None:
    a, _, _ = await _users(system)
    ws = await system.session.ws_connect(ws_url(system))
    await ws.send_str(orjson.dumps({"type": "auth", "access_token": a.token}).decode())
    assert (await next_push(ws))["type"] == "live.ready"
    await publish(system, session_event("session.created", a.tenant_id, a.id))
    assert (await next_push(ws))["type"] == "session.created"


async def test_events_are_withheld_while_revocations_cannot_be_confirmed(
    system: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _, _ = await _users(system)
    ws = await connect(system, a)
    with monkeypatch.context() as patch:
        patch.setattr(RevocationFollower, "current", property(lambda self: False))
        await publish(system, session_event("session.created", a.tenant_id, a.id))
        await nothing_within(ws)
    assert hub_of(system).withheld == 1
    await publish(system, session_event("session.updated", a.tenant_id, a.id))
    assert (await next_push(ws))["type"] == "session.updated"


async def test_a_missing_or_bad_token_closes_with_4401(system: Gateway) -> None:
    a, _, _ = await _users(system)
    garbage = await system.session.ws_connect(ws_url(system, "not-a-token"))
    assert (await closed_with(garbage))[0] == 4401
    silent = await system.session.ws_connect(ws_url(system))  # no token, no auth message: 1 s here
    assert (await closed_with(silent))[0] == 4401
    wrong_first = await system.session.ws_connect(ws_url(system))
    await wrong_first.send_str('{"type": "hello"}')
    assert (await closed_with(wrong_first))[0] == 4401
    forged = jwt.encode({**claims_of(a.token), "sub": str(uuid.uuid4())}, "s" * 32, algorithm="HS256")
    impostor = await system.session.ws_connect(ws_url(system, forged))
    assert (await closed_with(impostor))[0] == 4401
    async with system.session.get(f"{system.api}/ws") as response:  # not an upgrade: an HTTP error
        assert response.status == 426
        assert (await response.json())["error"]["code"] == "VALIDATION_FAILED"


async def test_logout_closes_the_socket_with_4401_within_two_seconds(system: Gateway) -> None:
    a, b, _ = await _users(system)
    socket_a, socket_b = await connect(system, a), await connect(system, b)
    assert (await post(system, "/auth/logout", {}, token=a.token))[0] == 204
    started = time.monotonic()
    code, reason = await closed_with(socket_a, 2.0)
    assert code == 4401 and "revoked" in reason
    assert time.monotonic() - started < 2.0
    await publish(system, session_event("session.created", b.tenant_id, b.id))
    assert (await next_push(socket_b))["type"] == "session.created"  # other users' sockets carry on


async def test_a_socket_closes_with_4401_when_its_token_expires(system: Gateway) -> None:
    a, _, _ = await _users(system)
    key = await system.services["auth"].ctx.components["auth"].keyring.active()  # type: ignore[attr-defined]
    leeway = system.app[LIVE_KEY].verifier.leeway
    now = int(time.time())
    # Signed by the real key; HTTP accepts it for two more seconds (its exp is inside the leeway).
    short_lived = jwt.encode(
        {**claims_of(a.token), "iat": now - 5, "exp": now + 2 - leeway, "jti": str(uuid.uuid4())},
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid},
    )
    ws = await connect(system, User({**a.tokens, "access_token": short_lived}))
    await nothing_within(ws, 0.5)
    code, reason = await closed_with(ws, 2 + DEADLINE)
    assert code == 4401 and "expired" in reason


async def test_a_client_may_not_open_too_many_sockets_or_talk_after_auth(system: Gateway) -> None:
    a, _, _ = await _users(system)
    held = [await connect(system, a) for _ in range(MAX_SOCKETS)]
    one_too_many = await system.session.ws_connect(ws_url(system, a.token))
    assert (await closed_with(one_too_many))[0] == 4429
    await held[0].send_str('{"type": "subscribe", "topic": "everything"}')
    assert (await closed_with(held[0]))[0] == 1008
    await connect(system, a)  # the closed one made room again
    huge = await system.session.ws_connect(ws_url(system))
    await huge.send_str('{"type": "auth", "access_token": "' + "x" * 8192 + '"}')
    assert (await closed_with(huge))[0] == 1009


async def _raw_socket_that_never_reads(gateway: Gateway, token: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads (a tiny receive buffer,
    so the kernel does not absorb the backlog for it)."""
    loop = asyncio.get_running_loop()
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    url = URL(gateway.url)
    assert url.host is not None and url.port is not None
    await loop.sock_connect(raw, (url.host, url.port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {BASE_PATH}/ws?access_token={token} HTTP/1.1\r\nHost: {url.host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(raw, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(raw, 1)  # one byte at a time: nothing past the headers is read
    assert head.startswith(b"HTTP/1.1 101"), head
    return raw


async def _wait_for(check: Any, seconds: float = DEADLINE) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_client_that_stops_reading_is_cut_and_its_queue_stays_bounded(
    system: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    a, _, _ = await _users(system)
    hub = hub_of(system)
    fast = await connect(system, a)
    (fast_socket,) = hub.sockets_of(a.tenant_id, a.id)
    raw = await _raw_socket_that_never_reads(system, a.token)
    await _wait_for(lambda: len(hub.sockets_of(a.tenant_id, a.id)) == 2)
    (slow,) = hub.sockets_of(a.tenant_id, a.id) - {fast_socket}

    received: list[dict[str, Any]] = []

    async def read_fast() -> None:
        while True:
            received.append(await next_push(fast))

    reader = asyncio.create_task(read_fast())
    published = 0
    with caplog.at_level(logging.WARNING, logger="services.gateway.live"):
        while slow.close_code is None and published < 4000:
            batch = [session_event("session.updated", a.tenant_id, a.id, padding=4000) for _ in range(16)]
            await asyncio.gather(*(publish(system, event) for event in batch))
            published += len(batch)
            assert slow.queue.qsize() <= SEND_QUEUE
    assert slow.close_code == 4408, f"not cut after {published} events"
    assert slow.high_water == SEND_QUEUE  # it filled up, and never held more
    assert any("reads too slowly" in record.getMessage() for record in caplog.records)
    await _wait_for(lambda: hub.sockets_of(a.tenant_id, a.id) == {fast_socket})
    await _wait_for(lambda: hub.sockets_of(a.tenant_id, a.id) == {fast_socket})
    # The connection was dropped: whatever the kernel held is readable, then the end.
    loop = asyncio.get_running_loop()
    with contextlib.suppress(ConnectionResetError):
        while await asyncio.wait_for(loop.sock_recv(raw, 1 << 16), DEADLINE):
            pass
    raw.close()
    # The reading client of the same user got every event and stays connected.
    await _wait_for(lambda: len(received) == published)
    assert fast_socket.close_code is None and fast_socket.high_water < SEND_QUEUE
    reader.cancel()


def _second_gateway_settings(nats: NatsServer, system: Gateway) -> GatewaySettings:
    data_dir = system.services["auth"].ctx.settings.data_dir
    return GatewaySettings(nats_url=nats.url, data_dir=data_dir, gateway_port=free_port(), log_level="WARNING")


@contextlib.asynccontextmanager
async def _second_gateway(nats: NatsServer, system: Gateway) -> AsyncIterator[Gateway]:
    async with running_gateway(_second_gateway_settings(nats, system)) as other:
        yield other


async def test_two_gateways_each_push_to_their_own_sockets(system: Gateway, nats: NatsServer) -> None:
    a, b, _ = await _users(system)
    async with _second_gateway(nats, system) as other:
        a_here = await connect(system, a)
        # Client sockets on the test's session: closing the second gateway's session must not close them.
        a_there, b_there = await connect(other, a, via=system.session), await connect(other, b, via=system.session)

        await publish(system, session_event("session.created", a.tenant_id, a.id))
        assert (await next_push(a_here))["type"] == "session.created"
        assert (await next_push(a_there))["type"] == "session.created"
        await publish(system, session_event("session.created", b.tenant_id, b.id))
        assert (await next_push(b_there))["type"] == "session.created"
        await nothing_within(a_here)
        await nothing_within(a_there, 0.1)
        assert hub_of(system).socket_count == 1 and hub_of(other).socket_count == 2

        # A revocation made through one gateway closes the sockets the other one holds.
        assert (await post(other, "/auth/logout", {}, token=a.token))[0] == 204
        assert (await closed_with(a_here, 2.0))[0] == 4401
        assert (await closed_with(a_there, 2.0))[0] == 4401
    # A gateway that shuts down says so to its sockets.
    assert (await closed_with(b_there))[0] == 1001


def test_openapi_documents_the_socket() -> None:
    operation = build_openapi(all_routes(), BASE_PATH)["paths"]["/ws"]["get"]
    assert "101" in operation["responses"] and "security" not in operation
    assert [parameter["name"] for parameter in operation["parameters"]] == ["access_token"]
    assert "4401" in operation["description"]


async def test_every_ready_tells_the_client_to_resync_because_nothing_is_replayed(
    system: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _, _ = await _users(system)
    ws = await system.session.ws_connect(ws_url(system, a.token))
    ready = await next_push(ws)
    assert ready["type"] == "live.ready"
    assert ready["data"]["resync"] is True
    assert {"session.created", "session.updated", "session.forked", "session.deleted"} <= set(ready["data"]["pushed"])
    await ws.close()
    missed = session_event("session.created", a.tenant_id, a.id)
    # JetStream's ack can reach the publisher before the gateway's own subscription has the event:
    # wait until the gateway has handled it, so the client is truly away when it passes.
    hub, handled = hub_of(system), asyncio.Event()
    dispatch = hub.dispatch

    def watched(raw: bytes) -> int:
        delivered = dispatch(raw)
        if str(missed.id).encode() in raw:
            handled.set()
        return delivered

    monkeypatch.setattr(hub, "dispatch", watched)
    await publish(system, missed)  # while the client is away
    await asyncio.wait_for(handled.wait(), 10)
    again = await system.session.ws_connect(ws_url(system, a.token))
    ready = await next_push(again)
    assert ready["type"] == "live.ready" and ready["data"]["resync"] is True
    await nothing_within(again)  # not replayed: the client refetches on live.ready instead
    await publish(system, session_event("session.updated", a.tenant_id, a.id))
    assert (await next_push(again))["type"] == "session.updated"


async def test_sockets_waiting_to_authenticate_are_bounded_for_the_gateway(system: Gateway) -> None:
    a, b, _ = await _users(system)
    hub = hub_of(system)
    waiting = [await system.session.ws_connect(ws_url(system)) for _ in range(MAX_UNAUTHENTICATED)]
    assert hub.unauthenticated == MAX_UNAUTHENTICATED
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await system.session.ws_connect(ws_url(system))
    assert refused.value.status == 503
    async with system.session.get(
        f"{system.api}/ws",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        },
    ) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert hub.refused == 2
    # A token in the query does not wait, so it is not refused; an authenticated socket frees a place.
    await connect(system, b)
    await waiting[0].send_str(orjson.dumps({"type": "auth", "access_token": a.token}).decode())
    assert (await next_push(waiting[0]))["type"] == "live.ready"
    assert hub.unauthenticated == MAX_UNAUTHENTICATED - 1
    late = await system.session.ws_connect(ws_url(system))
    # The others time out (1 s here) with 4401 and free their places too.
    for ws in (*waiting[1:], late):
        assert (await closed_with(ws))[0] == 4401
    assert hub.unauthenticated == 0
