"""The pull consumer's batches (shared/puller.py) against a real nats-server: a linger gathers what trickles
in into one batch, and ends as soon as the batch is full."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from shared.puller import Puller
from tests.support import NatsServer


@asynccontextmanager
async def _consumer(url: str) -> AsyncIterator[tuple[Client, str, Puller]]:
    """A fresh stream on a unique subject, a durable pull consumer on it, a started puller."""
    tag = uuid.uuid4().hex[:12]
    stream, subject = f"PULLER_{tag}", f"puller.{tag}"
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=stream, subjects=[subject]))
    await js.add_consumer(stream, ConsumerConfig(durable_name="reader", ack_policy=AckPolicy.EXPLICIT))
    puller = Puller(nc, stream, "reader")
    await puller.start()
    try:
        yield nc, subject, puller
    finally:
        await puller.stop()
        await nc.close()


async def _publish(nc: Client, subject: str, count: int, every: float = 0.0) -> None:
    js = nc.jetstream()
    for index in range(count):
        if every:
            await asyncio.sleep(every)
        await js.publish(subject, str(index).encode())


async def test_a_linger_gathers_what_trickles_in_into_one_batch(nats: NatsServer) -> None:
    async with _consumer(nats.url) as (nc, subject, puller):
        await _publish(nc, subject, 3)
        trickle = asyncio.create_task(_publish(nc, subject, 3, every=0.05))
        batch = await puller.fetch(100, timeout=1.0, linger=1.0)
        await trickle
        assert [m.data for m in batch] == [b"0", b"1", b"2", b"0", b"1", b"2"]


async def test_without_a_linger_a_fetch_takes_what_is_there(nats: NatsServer) -> None:
    async with _consumer(nats.url) as (nc, subject, puller):
        await _publish(nc, subject, 3)
        trickle = asyncio.create_task(_publish(nc, subject, 3, every=0.05))
        batch = await puller.fetch(100, timeout=1.0)
        await trickle
        assert [m.data for m in batch] == [b"0", b"1", b"2"]
        rest = await puller.fetch(100, timeout=1.0)  # nothing lost: the next fetch has the others
        assert [m.data for m in rest] == [b"0", b"1", b"2"]


async def test_a_linger_ends_as_soon_as_the_batch_is_full(nats: NatsServer) -> None:
    async with _consumer(nats.url) as (nc, subject, puller):
        await _publish(nc, subject, 2)
        trickle = asyncio.create_task(_publish(nc, subject, 4, every=0.05))
        started = time.monotonic()
        batch = await puller.fetch(5, timeout=1.0, linger=30.0)
        waited = time.monotonic() - started
        await trickle
        assert len(batch) == 5
        assert waited < 15.0  # far below the linger: it ended when the batch was full
        rest = await puller.fetch(5, timeout=1.0)
        assert [m.data for m in rest] == [b"3"]
