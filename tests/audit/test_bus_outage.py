"""A NATS restart under the audit service: it re-subscribes, replays what it had not acknowledged, and
the trail ends up with every event once, in order."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import nats as nats_client
import orjson

from contracts import audit as api
from contracts import subjects
from services.audit import repository as repo
from services.audit.chain import ChainVerifier
from tests.audit.helpers import publish, synthetic
from tests.conftest import service_env, start_audit
from tests.support import NatsServer, kill_nats


async def _publish_when_up(url: str, events: list, timeout: float = 20.0) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        try:
            await publish(url, events)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_a_nats_restart_loses_and_repeats_nothing(nats: NatsServer, tmp_path: Path) -> None:
    tenant = str(uuid.uuid4())
    running = await start_audit(service_env(nats.url, tmp_path / "data"), {"audit_ack_wait_seconds": 2})
    store = running.ctx.store
    try:
        await _publish_when_up(nats.url, [synthetic(tenant, None, i) for i in range(300)])
        kill_nats(nats)
        nats.start_again()
        await _publish_when_up(nats.url, [synthetic(tenant, None, i) for i in range(300, 600)])
        deadline = time.monotonic() + 30
        while (await store.run(lambda tx: repo.head(tx, tenant))).seq < 600:
            assert time.monotonic() < deadline, "the audit service did not catch up after the restart"
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.5)  # past the ack wait: a repeat would have landed by now
        raws = await store.run(lambda tx: repo.records(tx, tenant, 0, 0))
    finally:
        await running.shutdown()
    verifier = ChainVerifier(tenant_id=tenant, keys={})
    indexes = []
    for raw in raws:
        record = orjson.loads(raw)
        assert verifier.feed(record), verifier.result
        indexes.append(record["details"]["index"])
    assert verifier.finish().ok
    assert indexes == list(range(600))


async def test_events_delivered_but_never_acknowledged_are_recorded_first(nats: NatsServer, tmp_path: Path) -> None:
    """What a crashed process leaves: 30 events delivered to it, never acknowledged. Without the replay the
    next process would record the 70 after them first (JetStream hands those out at once and brings the
    30 back only after ack_wait)."""
    tenant = str(uuid.uuid4())
    env = service_env(nats.url, tmp_path / "data")
    first = await start_audit(env, {"audit_ack_wait_seconds": 2})
    await first.shutdown()  # the durable consumer exists now
    await _publish_when_up(nats.url, [synthetic(tenant, None, i) for i in range(100)])
    nc = await nats_client.connect(nats.url)
    try:
        crashed = await nc.jetstream().pull_subscribe(
            subjects.EVENTS_SUBJECTS[0], durable=api.EVENTS_DURABLE, stream=subjects.EVENTS_STREAM
        )
        assert len(await crashed.fetch(30, timeout=5)) == 30
    finally:
        await nc.close()
    running = await start_audit(env, {"audit_ack_wait_seconds": 2})
    try:
        deadline = time.monotonic() + 20
        while (await running.ctx.store.run(lambda tx: repo.head(tx, tenant))).seq < 100:
            assert time.monotonic() < deadline, "not every event was recorded"
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.5)  # the 30 come back after ack_wait: found recorded, not appended again
        raws = await running.ctx.store.run(lambda tx: repo.records(tx, tenant, 0, 0))
    finally:
        await running.shutdown()
    assert [orjson.loads(raw)["details"]["index"] for raw in raws] == list(range(100))
