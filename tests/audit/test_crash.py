"""kill -9 of the audit service while events are published: after a restart every event is recorded
exactly once and every chain verifies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from functools import partial
from pathlib import Path

import nats
import nats as nats_client
import orjson

from contracts.events import Actor, Event
from services.audit import repository as repo
from services.audit.chain import ChainVerifier
from shared.bus import stream_configs
from shared.settings import CommonSettings
from shared.store import open_store
from tests.support import NatsServer

EVENTS = 5000
BACKLOG = 3000
TENANTS = [str(uuid.uuid4()) for _ in range(3)]


def _start(nats_url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CODITECT_NATS_URL": nats_url,
        "CODITECT_DATA_DIR": str(data_dir),
        "CODITECT_LOG_LEVEL": "WARNING",
        "CODITECT_AUDIT_ACK_WAIT_SECONDS": "2",
        "CODITECT_AUDIT_FETCH_BATCH": "500",
        "CODITECT_AUDIT_CHECKPOINT_EVERY_RECORDS": "400",
    }
    return subprocess.Popen([sys.executable, "-m", "services.audit"], env=env)


async def _publish(nats_url: str, first: int, last: int) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        for start in range(first, last, 250):
            acks = []
            for index in range(start, start + 250):
                tenant = TENANTS[index % len(TENANTS)]
                event = Event(type="test.crash", tenant_id=uuid.UUID(tenant), actor=Actor(), data={"index": index})
                acks.append(
                    js.publish(event.subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": str(event.id)})
                )
            await asyncio.gather(*acks)
            await asyncio.sleep(0.02)
    finally:
        await nc.close()


async def test_kill_9_while_events_flow_leaves_exactly_every_event_recorded_once(
    nats: NatsServer, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    store = open_store(CommonSettings(data_dir=data_dir), "audit")

    async def total() -> int:
        try:
            heads = await store.run(partial(repo.chains, after=None, limit=100))
        except Exception:
            return 0
        return sum(head.seq for _, head in heads)

    nc = await nats_client.connect(nats.url)
    for config in stream_configs():
        await nc.jetstream().add_stream(config)  # before publishing: the service may not have made them yet
    await nc.close()
    # A backlog first, so that batches are in flight (fetched, not acknowledged) when the kill comes;
    # the rest is published while the service is killed and restarted.
    await _publish(nats.url, 0, BACKLOG)
    process = _start(nats.url, data_dir)
    publisher = asyncio.create_task(_publish(nats.url, BACKLOG, EVENTS))
    try:
        deadline = time.monotonic() + 60
        while await total() < EVENTS // 5:
            assert time.monotonic() < deadline and process.poll() is None, "the audit service made no progress"
            await asyncio.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at = await total()
        assert killed_at < EVENTS, "killed too late to test anything"
        process = _start(nats.url, data_dir)
        await publisher
        deadline = time.monotonic() + 90
        while await total() < EVENTS:
            assert time.monotonic() < deadline, f"only {await total()} of {EVENTS} recorded"
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # past the ack wait: any redelivery would have landed by now
        assert await total() == EVENTS
    finally:
        publisher.cancel()
        process.terminate()
        process.wait(20)

    indexes: list[int] = []
    for tenant in TENANTS:
        raws = await store.run(lambda tx, t=tenant: repo.records(tx, t, 0, 0))
        verifier = ChainVerifier(tenant_id=tenant, keys={})
        for raw in raws:
            record = orjson.loads(raw)
            assert verifier.feed(record), verifier.result
            indexes.append(record["details"]["index"])
        result = verifier.finish()
        assert result.ok and result.checked == len(raws)
        # In order per tenant: the publisher's order within each tenant.
        mine = [orjson.loads(raw)["details"]["index"] for raw in raws]
        assert mine == sorted(mine)
    assert sorted(indexes) == list(range(EVENTS))
    store.close()
