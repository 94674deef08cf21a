"""The bus helpers against a real nats-server: requests, JetStream streams and dedupe (the
request/reply handlers are tests/bus/test_dispatch.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from faststream.nats import NatsBroker
from nats.js.api import StreamConfig
from nats.js.errors import APIError, NoStreamResponseError

from contracts import subjects
from contracts.envelope import ErrorCode
from contracts.events import Event
from shared import bus
from tests.support import NatsServer


@pytest.fixture
async def broker(nats: NatsServer) -> AsyncIterator[NatsBroker]:
    """A started FastStream broker on the test's nats-server, stopped after the test."""
    started = bus.make_broker(nats.url, "test")
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def test_no_responders_is_service_unavailable_at_once(nats: NatsServer) -> None:
    connection = await nats_connect(nats.url)
    try:
        started = time.monotonic()
        reply = await bus.request(connection, f"rpc.nobody.{uuid.uuid4().hex}", {}, timeout=5)
        elapsed = time.monotonic() - started
    finally:
        await connection.close()
    assert reply.error is not None and reply.error.code == ErrorCode.SERVICE_UNAVAILABLE
    assert elapsed < 1.0


async def test_a_responder_that_never_answers_is_a_timeout(nats: NatsServer) -> None:
    subject = f"rpc.test.{uuid.uuid4().hex}"
    silent = await nats_connect(nats.url)

    async def ignore(msg: object) -> None:
        return None

    await silent.subscribe(subject, cb=ignore)
    await silent.flush()
    await silent.flush()  # one flush can overtake the SUB (see Dispatcher.start)
    try:
        reply = await bus.request(silent, subject, {}, timeout=0.3)
    finally:
        await silent.close()
    assert reply.error is not None and reply.error.code == ErrorCode.TIMEOUT


async def nats_connect(url: str) -> nats.aio.client.Client:
    return await nats.connect(url)


async def test_jetstream_stores_a_duplicate_event_id_once(broker: NatsBroker) -> None:
    await bus.ensure_streams(broker)
    event = Event(type=f"test.dedupe_{uuid.uuid4().hex}")
    for _ in range(3):
        await bus.publish_event(broker, event)
    await bus.publish_event(broker, Event(type=event.type))
    js = broker.config.connection_state.stream
    info = await js.stream_info(subjects.EVENTS_STREAM, subjects_filter=event.subject)
    assert info.state.subjects == {event.subject: 2}


async def test_events_published_together_are_acknowledged_each_and_stored_once_per_id(broker: NatsBroker) -> None:
    await bus.ensure_streams(broker)
    first, second = Event(type=f"test.together_{uuid.uuid4().hex}"), None
    second = Event(type=first.type)
    payloads = {event.id: event.model_dump_json().encode() for event in (first, second)}
    outcomes = await bus.publish_events(
        broker, [(first, payloads[first.id]), (first, payloads[first.id]), (second, payloads[second.id])]
    )
    assert outcomes == [None, None, None]
    js = broker.config.connection_state.stream
    info = await js.stream_info(subjects.EVENTS_STREAM, subjects_filter=first.subject)
    assert info.state.subjects == {first.subject: 2}, "the repeated id is stored once"
    assert (await js.get_last_msg(subjects.EVENTS_STREAM, first.subject)).data == payloads[second.id]
    assert bus.acks_pending(broker) == 0


async def test_events_whose_acks_never_come_fail_after_the_timeout_and_free_their_slots(broker: NatsBroker) -> None:
    js = broker.config.connection_state.stream
    # A stream that stores and never acknowledges: the publisher waits for nothing that comes.
    await js.delete_stream(subjects.EVENTS_STREAM)
    await js.add_stream(StreamConfig(name="SILENT", subjects=["evt.>"], no_ack=True))
    events = [Event(type="test.silent") for _ in range(3)]
    started = time.monotonic()
    outcomes = await bus.publish_events(
        broker, [(event, event.model_dump_json().encode()) for event in events], stream="SILENT", timeout=0.3
    )
    assert time.monotonic() - started < 2.0
    assert [type(outcome) for outcome in outcomes] == [TimeoutError] * 3
    assert bus.acks_pending(broker) == 0, "timed-out publishes leave nothing waiting"


async def test_a_refused_event_fails_at_once_with_jetstreams_reason_and_the_rest_are_stored(broker: NatsBroker) -> None:
    await bus.ensure_streams(broker)
    stored, refused = Event(type=f"test.refusal_{uuid.uuid4().hex}"), None
    refused = Event(type=stored.type)
    started = time.monotonic()
    outcomes = await bus.publish_events(broker, [(stored, stored.model_dump_json().encode())])
    outcomes += await bus.publish_events(
        broker, [(refused, refused.model_dump_json().encode())], stream="NOT_THE_EVENTS_STREAM", timeout=3.0
    )
    assert time.monotonic() - started < 2.0, "a refusal is an answer, not a timeout"
    assert outcomes[0] is None
    assert isinstance(outcomes[1], APIError) and outcomes[1].code == 400, outcomes[1]
    js = broker.config.connection_state.stream
    info = await js.stream_info(subjects.EVENTS_STREAM, subjects_filter=stored.subject)
    assert info.state.subjects == {stored.subject: 1}, "only the accepted event is stored"
    assert bus.acks_pending(broker) == 0


async def test_events_with_no_stream_to_take_them_fail_at_once(broker: NatsBroker) -> None:
    js = broker.config.connection_state.stream
    await js.delete_stream(subjects.EVENTS_STREAM)
    event = Event(type="test.nowhere")
    started = time.monotonic()
    outcomes = await bus.publish_events(broker, [(event, event.model_dump_json().encode())], timeout=3.0)
    assert time.monotonic() - started < 2.0
    assert [type(outcome) for outcome in outcomes] == [NoStreamResponseError]


async def test_streams_are_created_idempotently(broker: NatsBroker) -> None:
    await bus.ensure_streams(broker)
    await bus.ensure_streams(broker)
    js = broker.config.connection_state.stream
    names = {s.config.name for s in await js.streams_info()}
    assert {subjects.EVENTS_STREAM, subjects.FILE_EVENTS_STREAM} <= names


async def test_wait_for_nats_keeps_retrying_until_the_server_appears(nats: NatsServer, caplog) -> None:  # type: ignore[no-untyped-def]
    nats.stop()
    waiter = asyncio.create_task(bus.wait_for_nats(nats.url, "tester"))
    await asyncio.sleep(1.2)
    assert not waiter.done()
    assert any("tester cannot reach NATS at" in r.getMessage() for r in caplog.records)
    nats.start_again()
    await asyncio.wait_for(waiter, 10)


async def test_new_streams_have_a_retention_limit_and_existing_limits_are_kept(broker: NatsBroker) -> None:
    js = broker.config.connection_state.stream
    await bus.ensure_streams(broker)
    info = await js.stream_info(subjects.FILE_EVENTS_STREAM)
    assert info.config.max_age == bus.FILE_EVENTS_MAX_AGE_SECONDS
    tuned = info.config
    tuned.max_age = 3600.0
    await js.update_stream(tuned)
    await bus.ensure_streams(broker)
    assert (await js.stream_info(subjects.FILE_EVENTS_STREAM)).config.max_age == 3600.0
