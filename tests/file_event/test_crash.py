"""kill -9 of the file-event service (its own process) while a monitor publishes: after a restart
the store holds every event exactly once. (N is kept small for CI; bench/file_events.py runs bigger.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import subjects
from services.file_event.ingest import DURABLE
from tests.file_event.helpers import all_events, call, change, new_user, publish, subject_of, wait_for
from tests.support import Gateway, NatsServer, ServiceProcess, wait_ready

N = 6000


@pytest.fixture
def file_event_in_process() -> bool:
    return False


@pytest.fixture
def file_event_process(nats: NatsServer, tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        nats,
        "file_event",
        tmp_path / "data",
        tmp_path / "file_event.log",
        CODITECT_INGEST_BATCH_SIZE="200",
        # What the killed process held comes back after this (30 s by default).
        CODITECT_INGEST_ACK_WAIT_SECONDS="3",
    )
    try:
        yield process
    finally:
        process.stop()


async def _consumer_counts(nc: Any) -> tuple[int, int, int]:
    """(acknowledged stream sequence floor, pending, awaiting ack) of the ingest consumer."""
    info = await nc.jetstream().consumer_info(subjects.FILE_EVENTS_STREAM, DURABLE)
    return info.ack_floor.stream_seq or 0, info.num_pending or 0, info.num_ack_pending or 0


async def test_kill_9_while_publishing_loses_nothing_and_duplicates_nothing(
    system: Gateway, nats: NatsServer, file_event_process: ServiceProcess
) -> None:
    import nats as nats_client

    file_event_process.start()
    await wait_ready(system, timeout=30)
    user = await new_user(system)
    events = [change(f"crash/{i:05}.txt", second=i / 1000, size=i) for i in range(N)]
    nc = await nats_client.connect(nats.url)
    try:

        async def publisher() -> None:
            for start in range(0, N, 250):
                await publish(nc, subject_of(user), events[start : start + 250])

        publishing = asyncio.create_task(publisher())

        async def some_stored() -> bool:
            return (await _consumer_counts(nc))[0] >= N // 4

        await wait_for(some_stored, 60, "a quarter of the events consumed")
        file_event_process.kill()
        killed_at = (await _consumer_counts(nc))[0]
        await asyncio.wait_for(publishing, 60)
        assert killed_at < N, "the service finished before it was killed: the test proved nothing"

        file_event_process.start()
        started = time.monotonic()

        async def drained() -> bool:
            _, pending, unacked = await _consumer_counts(nc)
            return pending == 0 and unacked == 0

        await wait_for(drained, 90, "the consumer to drain after the restart")
        assert time.monotonic() - started < 90
    finally:
        await nc.close()

    stored = await all_events(system, user, limit=500)
    ids = [e["event_id"] for e in stored]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicates"
    assert sorted(ids) == sorted(e["event_id"] for e in events), f"{N - len(set(ids))} events lost"
    assert [e["path"] for e in stored] == [e["path"] for e in events]  # time order
    status, body, _ = await call(system, "GET", "/files", user, prefix="crash/", limit=500)
    assert status == 200 and all(f["versions"] == 1 for f in body["data"]["items"])
