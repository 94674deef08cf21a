"""The outbox on the real embedded store and a real nats-server: events a request staged go out from
memory after its commit; what is left is read back by the loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from faststream.nats import NatsBroker
from fdb.subspace_impl import Subspace
from nats.js.errors import NoStreamResponseError

from contracts import subjects
from contracts.events import Event
from shared import bus
from shared.outbox import Outbox
from shared.store import Store, Transaction, TransactionConflict
from shared.store.embedded import EmbeddedStore
from tests.support import NatsServer

T = TypeVar("T")


class CountingStore:
    """The real store, counting the transactions run through it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.name = store.name
        self.runs = 0

    async def run(self, fn: Callable[[Transaction], T]) -> T:
        self.runs += 1
        return await self.store.run(fn)

    async def check(self) -> None:
        await self.store.check()

    def close(self) -> None:
        self.store.close()


@pytest.fixture
async def broker(nats: NatsServer) -> AsyncIterator[NatsBroker]:
    broker = bus.make_broker(nats.url, "outbox-test")
    await broker.start()
    await bus.ensure_streams(broker)
    yield broker
    await broker.stop()


@pytest.fixture
def store(tmp_path: Path) -> Any:
    counting = CountingStore(EmbeddedStore(tmp_path / "store.sqlite3"))
    yield counting
    counting.close()


def an_outbox(store: Any, broker: NatsBroker) -> Outbox:
    root = Subspace(("outbox-test", uuid.uuid4().hex))
    return Outbox(store, root["outbox"], broker, dead_letters=root["dead"])


async def rows(store: Any, outbox: Outbox) -> list[tuple[bytes, bytes]]:
    span = outbox.space.range()
    return list(await store.run(lambda tx: tx.get_range(span.start, span.stop)))


async def published(broker: NatsBroker, event: Event) -> Event | None:
    js = broker.config.connection_state.stream
    try:
        message = await js.get_last_msg(subjects.EVENTS_STREAM, event.subject)
    except Exception:
        return None
    return Event.model_validate(orjson.loads(message.data))


def refusing_events(refusals: dict[uuid.UUID, Exception]) -> Callable[..., Any]:
    """``bus.publish_events`` that fails the named events with their errors and publishes the rest."""
    real = bus.publish_events

    async def publish_events(broker: NatsBroker, events: list[tuple[Event, bytes]], **kwargs: Any) -> Any:
        outcomes = await real(broker, [item for item in events if item[0].id not in refusals], **kwargs)
        sent = iter(outcomes)
        return [refusals[event.id] if event.id in refusals else next(sent) for event, _ in events]

    return publish_events


def an_event() -> Event:
    return Event(type=f"test.outbox_{uuid.uuid4().hex[:12]}")


async def test_only_the_committed_attempt_of_a_retried_transaction_is_published(store: Any, broker: NatsBroker) -> None:
    outbox = an_outbox(store, broker)
    first, second = an_event(), Event(type="test.retried")
    second = second.model_copy(update={"type": first.type})
    attempts = 0

    def change(tx: Transaction) -> str:
        nonlocal attempts
        attempts += 1
        outbox.stage(tx, first if attempts == 1 else second)
        if attempts == 1:
            raise TransactionConflict("someone else committed first")  # the store runs it again
        return "done"

    result, staged = await outbox.transact(change)
    assert (result, attempts) == ("done", 2)
    assert [item.event.id for item in staged] == [second.id]
    assert [orjson.loads(value)["id"] for _, value in await rows(store, outbox)] == [str(second.id)]
    await outbox.publish(staged)
    sent = await published(broker, second)
    assert sent is not None and sent.id == second.id


async def test_publishing_from_memory_reads_nothing_back_and_clears_the_rows_in_one_transaction(
    store: Any, broker: NatsBroker
) -> None:
    outbox = an_outbox(store, broker)
    events = [an_event(), an_event()]
    _, staged = await outbox.transact(lambda tx: [outbox.stage(tx, event) for event in events])
    store.runs = 0
    await outbox.publish(staged)
    assert store.runs == 1  # the clear; flush would also read the rows back first
    assert await rows(store, outbox) == []
    for event in events:
        sent = await published(broker, event)
        assert sent is not None and sent.id == event.id


async def test_an_event_the_bus_refused_stays_for_the_loop_to_deliver(store: Any, broker: NatsBroker) -> None:
    outbox = an_outbox(store, broker)
    event = an_event()
    _, staged = await outbox.transact(lambda tx: outbox.stage(tx, event))
    js = broker.config.connection_state.stream
    await js.delete_stream(subjects.EVENTS_STREAM)
    with pytest.raises(NoStreamResponseError):  # no stream takes the subject any more
        await outbox.publish(staged)
    assert len(await rows(store, outbox)) == 1
    await bus.ensure_streams(broker)
    stop = asyncio.Event()
    loop = asyncio.create_task(outbox.run(stop, interval=0.05))
    try:
        for _ in range(100):
            if await published(broker, event) is not None:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await loop
    sent = await published(broker, event)
    assert sent is not None and sent.id == event.id
    assert await rows(store, outbox) == []


async def test_flush_still_moves_an_undecodable_row_to_the_dead_letters(store: Any, broker: NatsBroker) -> None:
    outbox = an_outbox(store, broker)
    bad = outbox.space.pack((1, "not-an-event"))
    await store.run(lambda tx: tx.set(bad, b"\xff not json"))
    event = an_event()
    await outbox.transact(lambda tx: outbox.stage(tx, event))  # left for flush: not published from memory
    assert await outbox.flush() == 2
    assert await rows(store, outbox) == []
    assert await store.run(lambda tx: tx.get(outbox.dead_letters.pack((1, "not-an-event")))) == b"\xff not json"
    sent = await published(broker, event)
    assert sent is not None and sent.id == event.id


async def test_only_the_rows_of_events_that_went_out_are_cleared(
    store: Any, broker: NatsBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = an_outbox(store, broker)
    sent, refused = an_event(), an_event()
    _, staged = await outbox.transact(lambda tx: [outbox.stage(tx, event) for event in (sent, refused)])
    monkeypatch.setattr(bus, "publish_events", refusing_events({refused.id: ConnectionError("the bus went away")}))
    with pytest.raises(ConnectionError):
        await outbox.publish(staged)
    assert [orjson.loads(value)["id"] for _, value in await rows(store, outbox)] == [str(refused.id)]


async def test_concurrent_requests_share_the_transaction_that_clears_their_rows(store: Any, broker: NatsBroker) -> None:
    outbox = an_outbox(store, broker)
    stageds = [(await outbox.transact(lambda tx: outbox.stage(tx, an_event())))[1] for _ in range(20)]
    store.runs = 0
    await asyncio.gather(*(outbox.publish(staged) for staged in stageds))
    assert await rows(store, outbox) == []
    assert store.runs - 1 < 20 // 2, f"{store.runs - 1} clear transactions for 20 requests"  # -1: the read above
    for staged in stageds:
        assert await published(broker, staged[0].event) is not None


async def test_only_the_acknowledged_events_of_a_request_lose_their_rows(
    store: Any, broker: NatsBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = an_outbox(store, broker)
    good, bad = an_event(), an_event()
    monkeypatch.setattr(bus, "publish_events", refusing_events({bad.id: NoStreamResponseError()}))
    _, staged = await outbox.transact(lambda tx: [outbox.stage(tx, good), outbox.stage(tx, bad)])
    with pytest.raises(NoStreamResponseError):
        await outbox.publish(staged)
    left = [orjson.loads(value)["id"] for _, value in await rows(store, outbox)]
    assert left == [str(bad.id)]
    assert await published(broker, good) is not None
