"""The permission matrix on a real nats-server with the generated configuration: each identity is
refused every subject class it must not use, while its own traffic works."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats as nats_client
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts import auth, subjects
from contracts.subjects import EVENT_NAMESPACES, SERVICES
from shared.busauth import new_user_seed, write_private
from shared.buspolicy import BOOTSTRAP, GATEWAY, OPERATOR, inbox_prefix
from tests.support import NatsServer, connection_refusal

REFUSAL_WAIT = 1.0
QUIET_WAIT = 0.3


class Identity:
    """A connection as one identity that records the server's permission refusals."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.client: Client | None = None
        self.refusals: list[str] = []
        self.refused = asyncio.Event()

    async def on_error(self, error: Exception) -> None:
        if "permissions violation" in str(error).lower():
            self.refusals.append(str(error))
            self.refused.set()

    async def connect(self, server: NatsServer) -> Client:
        self.client = await nats_client.connect(
            server.client_url,
            nkeys_seed=str(server.seed_file(self.name)),
            inbox_prefix=inbox_prefix(self.name),
            error_cb=self.on_error,
            allow_reconnect=False,
        )
        return self.client

    async def was_refused(self, subject: str, kind: str) -> bool:
        """Whether the server refused ``kind`` (Publish/Subscription) on ``subject``."""
        assert self.client is not None
        await self.client.flush()
        deadline = asyncio.get_running_loop().time() + REFUSAL_WAIT
        needle = f'{kind} to "{subject}"'.lower()
        while not any(needle in refusal.lower() for refusal in self.refusals):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            self.refused.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.refused.wait(), remaining)
        return True


@contextlib.asynccontextmanager
async def connected(server: NatsServer, name: str) -> AsyncIterator[Identity]:
    identity = Identity(name)
    await identity.connect(server)
    try:
        yield identity
    finally:
        assert identity.client is not None
        await identity.client.close()


@contextlib.asynccontextmanager
async def watching(server: NatsServer, subject: str) -> AsyncIterator[list[Msg]]:
    """What test-admin sees on ``subject`` (to show a refused publish reached nobody)."""
    admin = await nats_client.connect(server.url)
    seen: list[Msg] = []

    async def keep(message: Msg) -> None:
        seen.append(message)

    await admin.subscribe(subject, cb=keep)
    # nats-py writes a flush's PING ahead of what is still in its buffer, so the first round trip can
    # end before the server saw the SUB; the second PING follows it (the cause of a flaky run).
    await admin.flush()
    await admin.flush()
    try:
        yield seen
    finally:
        await admin.close()


async def assert_publish_refused(server: NatsServer, identity: Identity, subject: str) -> None:
    assert identity.client is not None
    async with watching(server, subject) as seen:
        await identity.client.publish(subject, b"{}")
        assert await identity.was_refused(subject, "publish"), f"{identity.name} may publish {subject}"
        await asyncio.sleep(0.05)
    assert seen == [], f"{identity.name}'s publish on {subject} reached a subscriber"


async def assert_subscribe_refused(server: NatsServer, identity: Identity, subject: str, probe: str) -> None:
    """``identity`` subscribes ``subject``; test-admin publishes ``probe`` (matching it): nothing arrives."""
    assert identity.client is not None
    got: list[Msg] = []

    async def keep(message: Msg) -> None:
        got.append(message)

    await identity.client.subscribe(subject, cb=keep)
    assert await identity.was_refused(subject, "subscription"), f"{identity.name} may subscribe {subject}"
    admin = await nats_client.connect(server.url)
    try:
        await admin.publish(probe, b"secret")
        await admin.flush()
    finally:
        await admin.close()
    await asyncio.sleep(QUIET_WAIT)
    assert got == [], f"{identity.name} read {probe} through {subject}"


def other_service(service: str) -> str:
    return next(s for s in SERVICES if s != service)


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_is_refused_what_is_not_its_own(nats: NatsServer, service: str) -> None:
    async with connected(nats, service) as me:
        other = other_service(service)
        await assert_publish_refused(nats, me, subjects.rpc(other, "ping"))  # another service's requests
        await assert_publish_refused(nats, me, subjects.event(EVENT_NAMESPACES[other], "forged"))  # its events
        await assert_publish_refused(nats, me, auth.ROTATE_SIGNING_KEY)
        if service != "auth":
            await assert_publish_refused(nats, me, auth.SESSION_REVOKED_SUBJECT)
            await assert_subscribe_refused(nats, me, auth.LOGIN, auth.LOGIN)
        await assert_subscribe_refused(nats, me, "_INBOX.>", f"{inbox_prefix(GATEWAY)}.x.y")
        await assert_subscribe_refused(nats, me, f"{inbox_prefix(GATEWAY)}.>", f"{inbox_prefix(GATEWAY)}.x.y")
        await assert_subscribe_refused(nats, me, subjects.rpc(other, ">"), subjects.rpc(other, "ping"))
        await assert_publish_refused(nats, me, f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}")
        await assert_publish_refused(nats, me, f"$JS.API.STREAM.CREATE.{subjects.EVENTS_STREAM}")


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_answers_its_requests_and_publishes_its_events(nats: NatsServer, service: str) -> None:
    async with connected(nats, service) as me, connected(nats, GATEWAY) as gateway:
        assert me.client is not None and gateway.client is not None

        async def answer(message: Msg) -> None:
            await message.respond(b"pong")

        await me.client.subscribe(subjects.ping(service), queue=subjects.queue_group(service), cb=answer)
        await me.client.flush()
        await me.client.flush()  # see Dispatcher.start: one flush can overtake the SUB
        reply = await gateway.client.request(subjects.ping(service), b"{}", timeout=2)
        assert reply.data == b"pong"
        # Its own namespace's event, through JetStream with the publish acknowledgement.
        ack = await me.client.jetstream().publish(
            subjects.event(EVENT_NAMESPACES[service], "happened"), b"{}", headers={"Nats-Msg-Id": str(uuid.uuid4())}
        )
        assert ack.stream == subjects.EVENTS_STREAM
        assert me.refusals == []


async def test_the_gateway_may_request_but_not_rotate_forge_revocations_or_listen_to_requests(
    nats: NatsServer,
) -> None:
    async with connected(nats, GATEWAY) as gateway:
        await assert_publish_refused(nats, gateway, auth.ROTATE_SIGNING_KEY)
        await assert_publish_refused(nats, gateway, auth.SESSION_REVOKED_SUBJECT)
        await assert_publish_refused(nats, gateway, subjects.event("session", "created"))
        await assert_subscribe_refused(nats, gateway, auth.LOGIN, auth.LOGIN)
        await assert_subscribe_refused(nats, gateway, "evt.auth.>", "evt.auth.login_succeeded")
        await assert_subscribe_refused(nats, gateway, "_INBOX.>", f"{inbox_prefix('auth')}.x.y")
        # A consumer on the events stream only for the revocations it follows.
        sneaky = f"$JS.API.CONSUMER.CREATE.{subjects.REVOCATIONS_STREAM}.peek.evt.auth.>"
        await assert_publish_refused(nats, gateway, sneaky)
        await assert_publish_refused(nats, gateway, f"$JS.API.CONSUMER.DELETE.{subjects.REVOCATIONS_STREAM}.x")
        # Reads by sequence only of the revocations stream: no other event (a login's, a user's).
        for stream in (subjects.EVENTS_STREAM, subjects.FILE_EVENTS_STREAM, subjects.AUDIT_CHECKPOINTS_STREAM):
            await assert_publish_refused(nats, gateway, f"$JS.API.STREAM.MSG.GET.{stream}")
            await assert_publish_refused(
                nats, gateway, f"$JS.API.CONSUMER.CREATE.{stream}.x.{auth.SESSION_REVOKED_SUBJECT}"
            )


async def test_only_the_operator_may_rotate_and_it_may_do_nothing_else(nats: NatsServer) -> None:
    async with connected(nats, OPERATOR) as operator, watching(nats, auth.ROTATE_SIGNING_KEY) as seen:
        assert operator.client is not None
        await operator.client.publish(auth.ROTATE_SIGNING_KEY, b"{}")
        await operator.client.flush()
        for _ in range(100):  # up to 5 s: a loaded machine delivers late, not never
            if seen:
                break
            await asyncio.sleep(0.05)
        assert len(seen) == 1 and operator.refusals == []
        await assert_publish_refused(nats, operator, auth.LOGIN)
        await assert_publish_refused(nats, operator, auth.SESSION_REVOKED_SUBJECT)


async def test_only_the_bootstrap_identity_creates_streams(nats: NatsServer) -> None:
    async with connected(nats, BOOTSTRAP) as bootstrap:
        assert bootstrap.client is not None
        info = await bootstrap.client.jetstream().stream_info(subjects.EVENTS_STREAM)
        assert info.config.name == subjects.EVENTS_STREAM
        await assert_publish_refused(nats, bootstrap, f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}")
        await assert_publish_refused(nats, bootstrap, subjects.event("auth", "forged"))
        await assert_publish_refused(nats, bootstrap, auth.LOGIN)


def assert_authorization_refused(refusal: Exception | None) -> None:
    assert refusal is not None, "the connection was admitted"
    assert "authorization" in str(refusal).lower(), refusal


async def test_an_anonymous_connection_is_refused(nats: NatsServer) -> None:
    assert_authorization_refused(await connection_refusal(nats.client_url))


async def test_an_unknown_key_is_refused(nats: NatsServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.nk"
    write_private(stranger, new_user_seed())
    assert_authorization_refused(await connection_refusal(nats.client_url, nkeys_seed=str(stranger)))


async def test_a_wrong_password_for_the_test_admin_is_refused(nats: NatsServer) -> None:
    wrong = nats.url.replace("@", "x@", 1)
    assert_authorization_refused(await connection_refusal(wrong))
