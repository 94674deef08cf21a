"""The request/reply dispatcher against a real nats-server: typed handlers, the envelope for every
outcome, concurrency per subject, queue groups, trace context and a draining stop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from pydantic import BaseModel, Field

from contracts.envelope import ErrorCode, Reply
from shared import bus
from shared.dispatch import Dispatcher
from shared.errors import ServiceError
from shared.store import StoreUnavailable
from shared.telemetry import current_trace_id
from tests.support import NatsServer

QUEUE = "svc-test"


class Double(BaseModel):
    value: int
    note: str = Field(default="", max_length=5)


class Doubled(BaseModel):
    value: int


class Echo(BaseModel):
    echo: str | None = None


Handler = Callable[[Double], Awaitable[Any]]


@asynccontextmanager
async def serving(url: str, handler: Handler, subject: str, **options: Any) -> AsyncIterator[Dispatcher]:
    """One dispatcher answering ``subject`` on its own connection (as one service replica)."""
    connection = await nats.connect(url)
    dispatcher = Dispatcher(graceful_timeout=options.pop("graceful_timeout", 10.0))
    dispatcher.add(subject, Double, handler, queue=QUEUE, **options)
    await dispatcher.start(connection)
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()
        await connection.close()


@pytest.fixture
async def client(nats: NatsServer) -> AsyncIterator[Client]:
    """The requesting side (a gateway)."""
    connection = await _connect(nats.url)
    yield connection
    await connection.close()


async def _connect(url: str) -> Client:
    return await nats.connect(url)


def a_subject() -> str:
    return f"rpc.test.{uuid.uuid4().hex}"


async def test_a_typed_handler_gets_its_model_and_its_result_is_the_envelope(nats: NatsServer, client: Client) -> None:
    subject = a_subject()

    async def double(message: Double) -> Doubled:
        return Doubled(value=message.value * 2)

    async with serving(nats.url, double, subject):
        raw = await client.request(subject, b'{"value": 21}', timeout=2)
    assert raw.data == b'{"ok":true,"result":{"value":42}}'  # the envelope as Reply.success writes it


async def test_an_empty_body_is_an_empty_object(nats: NatsServer, client: Client) -> None:
    subject = a_subject()

    async def echo(message: Echo) -> dict[str, Any]:
        return {"echo": message.echo}

    connection = await _connect(nats.url)
    dispatcher = Dispatcher()
    dispatcher.add(subject, Echo, echo, queue=QUEUE)
    await dispatcher.start(connection)
    try:
        reply = await bus.request(client, subject, b"", timeout=2)
    finally:
        await dispatcher.stop()
        await connection.close()
    assert reply.ok and reply.result == {"echo": None}


async def test_an_invalid_request_is_validation_failed_with_the_fields(nats: NatsServer, client: Client) -> None:
    subject = a_subject()
    called = False

    async def double(message: Double) -> Doubled:
        nonlocal called
        called = True
        return Doubled(value=message.value * 2)

    async with serving(nats.url, double, subject):
        reply = await bus.request(client, subject, {"value": "not a number", "note": "far too long"}, timeout=2)
        not_json = await bus.request(client, subject, b"{nope", timeout=2)
    assert reply.error is not None and reply.error.code == ErrorCode.VALIDATION_FAILED
    assert reply.error.message == "the request is not valid"
    assert {d["field"] for d in reply.error.details} == {"value", "note"}
    assert all(d["message"] for d in reply.error.details)
    assert not_json.error is not None and not_json.error.code == ErrorCode.VALIDATION_FAILED
    assert not called


async def test_a_domain_error_keeps_its_code_details_and_retry_after(nats: NatsServer, client: Client) -> None:
    subject = a_subject()

    async def refuse(message: Double) -> Doubled:
        raise ServiceError(ErrorCode.RATE_LIMITED, "slow down", details={"limit": 3}, retry_after=7)

    async with serving(nats.url, refuse, subject):
        reply = await bus.request(client, subject, Double(value=1), timeout=2)
    assert reply.error is not None
    assert (reply.error.code, reply.error.message, reply.error.details, reply.error.retry_after) == (
        ErrorCode.RATE_LIMITED,
        "slow down",
        {"limit": 3},
        7,
    )


async def test_a_crash_is_internal_and_says_nothing_of_it(
    nats: NatsServer, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    subject = a_subject()

    async def crash(message: Double) -> Doubled:
        raise RuntimeError("boom at /srv/secret")

    async with serving(nats.url, crash, subject):
        reply = await bus.request(client, subject, Double(value=1), timeout=2)
    assert reply.error is not None and reply.error.code == ErrorCode.INTERNAL
    assert reply.error.message == "internal error" and reply.error.details is None
    assert "boom at /srv/secret" in caplog.text  # the operator learns it from the log


async def test_an_unavailable_store_is_service_unavailable(nats: NatsServer, client: Client) -> None:
    subject = a_subject()

    async def read(message: Double) -> Doubled:
        raise StoreUnavailable("database is locked")

    async with serving(nats.url, read, subject):
        reply = await bus.request(client, subject, Double(value=1), timeout=2)
    assert reply.error is not None and reply.error.code == ErrorCode.SERVICE_UNAVAILABLE
    assert "locked" not in reply.error.message


async def _in_flight_peak(url: str, client: Client, *, max_workers: int, requests: int) -> tuple[int, float]:
    """Send ``requests`` at once to a handler that waits; the most that ran together, and how long."""
    subject = a_subject()
    running = peak = 0

    async def slow(message: Double) -> Doubled:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.2)
        running -= 1
        return Doubled(value=message.value)

    async with serving(url, slow, subject, max_workers=max_workers):
        loop = asyncio.get_running_loop()
        started = loop.time()
        replies = await asyncio.gather(
            *(bus.request(client, subject, Double(value=i), timeout=10) for i in range(requests))
        )
        elapsed = loop.time() - started
    assert [r.result for r in replies] == [{"value": i} for i in range(requests)], [r.error for r in replies]
    return peak, elapsed


async def test_a_subject_runs_up_to_max_workers_handlers_at_once(nats: NatsServer, client: Client) -> None:
    peak, elapsed = await _in_flight_peak(nats.url, client, max_workers=8, requests=8)
    assert peak == 8
    assert elapsed < 0.2 * 4  # eight waits of 0.2 s overlapped, not one after another


async def test_a_subject_never_runs_more_than_max_workers_at_once(nats: NatsServer, client: Client) -> None:
    peak, _ = await _in_flight_peak(nats.url, client, max_workers=3, requests=12)
    assert peak == 3
    peak, _ = await _in_flight_peak(nats.url, client, max_workers=1, requests=3)
    assert peak == 1


async def test_replicas_in_one_queue_group_share_the_requests(nats: NatsServer, client: Client) -> None:
    subject = a_subject()
    served: dict[str, int] = {"a": 0, "b": 0}

    def replica(name: str) -> Handler:
        async def handle(message: Double) -> dict[str, str]:
            served[name] += 1
            await asyncio.sleep(0.01)
            return {"by": name}

        return handle

    async with (
        serving(nats.url, replica("a"), subject, max_workers=4),
        serving(nats.url, replica("b"), subject, max_workers=4),
    ):
        replies = await asyncio.gather(*(bus.request(client, subject, Double(value=i), timeout=5) for i in range(60)))
    assert all(r.ok for r in replies)
    assert served["a"] + served["b"] == 60  # each request reached one replica, not both
    assert served["a"] > 0 and served["b"] > 0


async def test_the_handler_runs_in_the_trace_of_the_request(nats: NatsServer, client: Client) -> None:
    subject = a_subject()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"

    async def which_trace(message: Double) -> dict[str, str | None]:
        await asyncio.sleep(0)
        return {"trace_id": current_trace_id()}

    async with serving(nats.url, which_trace, subject, max_workers=4):
        traced = await client.request(
            subject, b'{"value": 1}', timeout=2, headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
        )
        untraced = await client.request(subject, b'{"value": 1}', timeout=2)
    assert Reply.model_validate_json(traced.data).result == {"trace_id": trace_id}
    started_here = Reply.model_validate_json(untraced.data).result["trace_id"]
    assert started_here is not None and started_here != trace_id


async def test_stopping_finishes_the_requests_in_flight_then_takes_no_more(nats: NatsServer, client: Client) -> None:
    subject = a_subject()
    entered = asyncio.Event()

    async def slow(message: Double) -> Doubled:
        entered.set()
        await asyncio.sleep(0.5)
        return Doubled(value=message.value)

    async with serving(nats.url, slow, subject, max_workers=4) as dispatcher:
        in_flight = [asyncio.create_task(bus.request(client, subject, Double(value=i), timeout=5)) for i in range(3)]
        await asyncio.wait_for(entered.wait(), 5)
        await asyncio.sleep(0.05)
        await dispatcher.stop()
        replies = await asyncio.gather(*in_flight)
        assert [r.result for r in replies] == [{"value": i} for i in range(3)]
        after = await bus.request(client, subject, Double(value=9), timeout=2)
    assert after.error is not None and after.error.code == ErrorCode.SERVICE_UNAVAILABLE


async def test_a_stop_gives_up_on_handlers_that_outlive_the_graceful_timeout(nats: NatsServer, client: Client) -> None:
    subject = a_subject()
    started: list[int] = []
    cancelled: list[int] = []

    async def stuck(message: Double) -> Doubled:
        started.append(message.value)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(message.value)
            raise
        return Doubled(value=0)

    async with serving(nats.url, stuck, subject, max_workers=2, graceful_timeout=0.3) as dispatcher:
        # Two run, the third waits for a place: the stop times out while still draining.
        requests = [asyncio.create_task(bus.request(client, subject, Double(value=i), timeout=5)) for i in range(3)]
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.wait_for(dispatcher.stop(), 5)
        assert loop.time() - began < 2
        await asyncio.sleep(0.1)
        assert sorted(cancelled) == sorted(started) and len(started) == 2  # the queued one never started
        for request in requests:
            request.cancel()
