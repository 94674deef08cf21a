"""Workspace monitor credentials on the generated configuration: a monitor publishes its own
workspace's file changes (acknowledged by JetStream) and nothing else; revoked, it is cut off."""

from __future__ import annotations

import asyncio
import uuid

import nats as nats_client
import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError

from contracts import auth, subjects
from shared.monitorcreds import MonitorCredentials, issue_monitor_credentials, revoke_monitor_credentials
from shared.settings import CommonSettings
from tests.bus.test_permissions import Identity, assert_publish_refused, assert_subscribe_refused
from tests.support import NatsServer


async def connect_monitor(server: NatsServer, credentials: MonitorCredentials, identity: Identity) -> Client:
    """Connect as the monitor (the server applies a reload within moments: retry briefly)."""
    for _ in range(50):
        try:
            client = await nats_client.connect(
                server.client_url,
                allow_reconnect=False,
                connect_timeout=2,
                error_cb=identity.on_error,
                **credentials.connect_options(),
            )
        except (NatsError, OSError):  # refused before the reload: an error or a closed connection
            await asyncio.sleep(0.05)
            continue
        identity.client = client
        return client
    raise AssertionError("the monitor's credentials were never accepted")


async def test_a_monitor_publishes_its_own_workspace_only_and_is_cut_off_when_revoked(nats: NatsServer) -> None:
    assert nats.bus is not None
    settings = CommonSettings(bus_dir=nats.bus.path)
    tenant, user, workspace = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    credentials = await issue_monitor_credentials(settings, tenant, user, workspace)
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
        second = await issue_monitor_credentials(settings, tenant, user, uuid.uuid4())
        assert second.public_key != credentials.public_key

        assert await revoke_monitor_credentials(settings, tenant, user, workspace)
        for _ in range(50):
            if client.is_closed or not client.is_connected:
                break
            await asyncio.sleep(0.05)
        assert not client.is_connected, "a revoked monitor stays connected"
    finally:
        await client.close()
    with pytest.raises(NatsError):
        await nats_client.connect(
            nats.client_url, allow_reconnect=False, connect_timeout=2, **credentials.connect_options()
        )
    assert not await revoke_monitor_credentials(settings, tenant, user, workspace)
