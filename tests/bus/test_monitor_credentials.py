"""Workspace monitor credentials on the generated configuration: a monitor publishes its own
workspace's file changes (acknowledged by JetStream) and nothing else; withdrawn, it is refused and cut
off. Keys are issued by the real provisioning service, which admits them through nats-server's
authorization callout; the server's configuration never changes (no reload)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats as nats_client
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts import auth, subjects
from services.monitor.buffer import DiskBuffer
from services.monitor.publisher import Publisher
from services.provisioning.monitor_keys import MonitorKeys
from shared.busauth import new_user_seed
from shared.buspolicy import GATEWAY, inbox_prefix
from shared.monitorcreds import MonitorCredentials
from tests.bus.test_permissions import Identity, assert_publish_refused, assert_subscribe_refused, connected
from tests.conftest import service_env, start_provisioning
from tests.support import NatsServer, connection_refusal

AUTHORIZATION_TTL = 1.5


@pytest.fixture
async def keys(nats: NatsServer, tmp_path: Path) -> AsyncIterator[MonitorKeys]:
    """The provisioning service (its callout answering), with short-lived monitor authorizations."""
    overrides: dict[str, Any] = {
        "provisioning_on_register": False,
        "monitor_authorization_ttl_seconds": AUTHORIZATION_TTL,
    }
    running = await start_provisioning(service_env(nats.url, tmp_path / "data"), overrides)
    try:
        yield running.ctx.components["monitor_keys"]
    finally:
        await running.shutdown()


async def refused(server: NatsServer, **options: Any) -> bool:
    return await connection_refusal(server.client_url, **options) is not None


async def connect_monitor(server: NatsServer, credentials: MonitorCredentials, identity: Identity) -> Client:
    """Connect as the monitor: admitted at once (the key is in the store before ``issue`` returns)."""
    client = await nats_client.connect(
        server.client_url,
        allow_reconnect=False,
        connect_timeout=2,
        error_cb=identity.on_error,
        **credentials.connect_options(),
    )
    identity.client = client
    return client


async def test_a_monitor_publishes_its_own_workspace_only_and_is_cut_off_when_withdrawn(
    nats: NatsServer, keys: MonitorKeys
) -> None:
    tenant, user, workspace = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    credentials = await keys.issue(tenant, user, workspace)
    assert credentials.seed not in repr(credentials)
    assert credentials.subject == subjects.file_subject(tenant, user, workspace)
    monitor = Identity(credentials.identity)
    client = await connect_monitor(nats, credentials, monitor)
    try:
        ack = await client.jetstream().publish(
            credentials.subject, b"{}", headers={"Nats-Msg-Id": str(uuid.uuid4())}, timeout=2
        )
        assert ack.stream == subjects.FILE_EVENTS_STREAM
        assert monitor.refusals == []
        # Another workspace of the same user, another user's, another tenant's: refused.
        for other in (
            subjects.file_subject(tenant, user, uuid.uuid4()),
            subjects.file_subject(tenant, uuid.uuid4(), workspace),
            subjects.file_subject(uuid.uuid4(), user, workspace),
            "fevt.>",
        ):
            await assert_publish_refused(nats, monitor, other)
        await assert_publish_refused(nats, monitor, auth.SESSION_REVOKED_SUBJECT)
        await assert_publish_refused(nats, monitor, subjects.event("file", "changed"))
        await assert_publish_refused(nats, monitor, auth.LOGIN)
        await assert_subscribe_refused(nats, monitor, "fevt.>", subjects.file_subject(tenant, uuid.uuid4(), workspace))
        await assert_subscribe_refused(nats, monitor, "_INBOX.>", "_INBOX.gateway.x.y")

        # A second workspace's monitor is independent of the first.
        second = await keys.issue(tenant, user, uuid.uuid4())
        assert second.public_key != credentials.public_key
        assert not await refused(nats, **second.connect_options())

        assert await keys.withdraw(workspace)
        assert await refused(nats, **credentials.connect_options()), "a withdrawn key is admitted"
        # The open connection ends when its authorization runs out, and asking again is refused.
        for _ in range(int(AUTHORIZATION_TTL * 20) + 60):
            if client.is_closed or not client.is_connected:
                break
            await asyncio.sleep(0.05)
        assert not client.is_connected, "a withdrawn monitor stays connected"
    finally:
        await client.close()
    assert not await keys.withdraw(workspace)
    assert not await refused(nats, **second.connect_options()), "withdrawing one workspace's key cut another's"


async def test_a_key_provisioning_never_issued_is_refused(nats: NatsServer, keys: MonitorKeys) -> None:
    seed = new_user_seed().decode()
    assert await refused(nats, nkeys_seed_str=seed, inbox_prefix=inbox_prefix("monitor-x"))
    # No credentials at all: refused too (the callout sees no key).
    assert await refused(nats)


async def test_issuing_again_replaces_the_earlier_key(nats: NatsServer, keys: MonitorKeys) -> None:
    tenant, user, workspace = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    first = await keys.issue(tenant, user, workspace)
    second = await keys.issue(tenant, user, workspace)
    assert await refused(nats, **first.connect_options())
    assert not await refused(nats, **second.connect_options())


async def test_issuing_and_withdrawing_monitor_keys_leaves_requests_in_flight_answered(
    nats: NatsServer, keys: MonitorKeys
) -> None:
    """Workspaces come and go while users work: a credential change must not cost anyone a reply
    (a reply is allowed through ``allow_responses``; a server reload forgets those grants)."""
    answered: list[bytes] = []

    async with connected(nats, "auth") as responder, connected(nats, GATEWAY) as requester:
        assert responder.client is not None and requester.client is not None

        async def slow_answer(msg: Msg) -> None:
            await asyncio.sleep(0.5)
            await msg.respond(b"pong")

        async def slow_handler(msg: Msg) -> None:  # nats-py runs one callback at a time: answer concurrently
            tasks.add(task := asyncio.create_task(slow_answer(msg)))
            task.add_done_callback(tasks.discard)

        tasks: set[asyncio.Task[None]] = set()
        await responder.client.subscribe(subjects.rpc("auth", "slow_ping"), cb=slow_handler)
        await responder.client.flush()
        await responder.client.flush()  # one flush can overtake the SUB (see Dispatcher.start)

        async def ask() -> None:
            assert requester.client is not None
            reply = await requester.client.request(subjects.rpc("auth", "slow_ping"), b"", timeout=3)
            answered.append(reply.data)

        in_flight = [asyncio.create_task(ask()) for _ in range(20)]
        await asyncio.sleep(0.1)
        tenant, user, workspace = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        credentials = await keys.issue(tenant, user, workspace)
        assert not await refused(nats, **credentials.connect_options())
        results = await asyncio.gather(*in_flight, return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []

        in_flight = [asyncio.create_task(ask()) for _ in range(20)]
        await asyncio.sleep(0.1)
        await keys.withdraw(workspace)
        results = await asyncio.gather(*in_flight, return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
    assert answered == [b"pong"] * 40


async def test_a_monitor_keeps_publishing_after_its_authorization_runs_out(
    nats: NatsServer, keys: MonitorKeys, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server ends a monitor's connection when its authorization expires, and nats-py closes the
    client for good on that error instead of reconnecting: the monitor must connect again, and the
    callout admits its key again (still issued), so no change is lost or stuck on disk. Routine, so
    said once at INFO, not as a lost connection."""
    caplog.set_level(logging.INFO, logger="services.monitor.publisher")
    tenant, user, workspace = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    credentials = await keys.issue(tenant, user, workspace)
    buffer = DiskBuffer(tmp_path / "buffer.sqlite3", max_events=100)
    publisher = Publisher(
        buffer,
        credentials.subject,
        url=nats.client_url,
        connect_options=credentials.connect_options(),
        max_in_flight=8,
        timeout=2,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(publisher.run(stop))

    async def sent(msg_id: str) -> None:
        buffer.append([(msg_id, b"{}")])
        publisher.wake.set()
        for _ in range(400):
            if buffer.count == 0:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{msg_id} still on disk after 20 s")

    try:
        await sent(str(uuid.uuid4()))
        first = publisher.nc
        for _ in range(int(AUTHORIZATION_TTL * 20) + 100):
            if first is not None and first.is_closed:
                break
            await asyncio.sleep(0.05)
        assert first is not None and first.is_closed, "the server did not end the expired authorization"
        later = [str(uuid.uuid4()) for _ in range(3)]
        for msg_id in later:
            await sent(msg_id)
        assert publisher.published == 4
        said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "services.monitor.publisher"]
        expired = "the NATS connection was closed (nats: user authentication expired); connecting again"
        assert (logging.INFO, expired) in said
        assert not [message for _, message in said if "lost the connection" in message]
    finally:
        stop.set()
        publisher.wake.set()
        await asyncio.wait_for(running, 10)
        await publisher.close()
        buffer.close()
