"""The audit feed's linger (``CODITECT_AUDIT_FETCH_LINGER_SECONDS``): events that trickle in within it are
recorded as one batch (one transaction, one acknowledgement flush), not one batch each."""

from __future__ import annotations

import asyncio
from typing import Any

import nats as nats_client
import pytest

from services.audit.appender import Appender
from tests.audit.helpers import synthetic, wait_for
from tests.session.helpers import new_user
from tests.support import Gateway, NatsServer


@pytest.fixture
def audit_overrides() -> dict[str, Any]:
    return {"audit_fetch_linger_seconds": 1.0, "audit_ack_wait_seconds": 5}


async def test_events_trickling_in_within_the_linger_are_recorded_as_one_batch(
    system: Gateway, nats: NatsServer
) -> None:
    admin = await new_user(system)
    await wait_for(system, admin, 2)  # registered, logged in: the feed is idle now
    appender: Appender = system.services["audit"].ctx.components["appender"]
    before = appender.batches
    nc = await nats_client.connect(nats.url)
    try:
        for index in range(5):  # 50 ms apart: without a linger, each would open a batch of its own
            event = synthetic(admin.tenant_id, admin.id, index)
            await nc.jetstream().publish(event.subject, event.model_dump_json().encode())
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
    found = await wait_for(system, admin, 7)
    assert [record["details"].get("index") for record in found[2:]] == [0, 1, 2, 3, 4]
    assert appender.batches - before == 1
