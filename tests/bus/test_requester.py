"""The gateway's requester against a real nats-server: each request gets its own reply, no
responders and timeouts fail as nats-py's do, and nothing of a finished request is left behind."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import nats as nats_client
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from contracts.envelope import ErrorCode
from shared import bus
from shared.requester import Requester
from tests.support import NatsServer


@pytest.fixture
async def connection(nats: NatsServer) -> AsyncIterator[Client]:
    client = await nats_client.connect(nats.url)
    yield client
    await client.close()


@pytest.fixture
async def requester(connection: Client) -> Requester:
    started = Requester(connection)
    await started.start()
    return started


async def echo_with_delay(connection: Client, subject: str) -> None:
    """Answers each request with its own body, the later ones sooner (replies arrive out of order)."""

    async def answer(msg: Msg) -> None:
        delay = 0.05 / (1 + int(msg.data))
        await asyncio.sleep(delay)
        await msg.respond(msg.data)

    async def handle(msg: Msg) -> None:
        asyncio.get_running_loop().create_task(answer(msg))

    await connection.subscribe(subject, cb=handle)
    await connection.flush()
    await connection.flush()  # one flush can overtake the SUB (see Dispatcher.start)


async def test_concurrent_requests_each_get_their_own_reply(requester: Requester, connection: Client) -> None:
    subject = f"test.echo.{uuid.uuid4().hex}"
    await echo_with_delay(connection, subject)
    replies = await asyncio.gather(*(requester.request(subject, str(n).encode(), 5.0) for n in range(50)))
    assert [reply.data for reply in replies] == [str(n).encode() for n in range(50)]
    assert requester.pending == 0


async def test_no_responders_fails_at_once(requester: Requester) -> None:
    started = time.monotonic()
    with pytest.raises(NoRespondersError):
        await requester.request(f"test.nobody.{uuid.uuid4().hex}", b"{}", 10.0)
    assert time.monotonic() - started < 5.0
    assert requester.pending == 0


async def test_a_silent_responder_times_out_and_a_late_reply_is_dropped(
    requester: Requester, connection: Client
) -> None:
    subject = f"test.silent.{uuid.uuid4().hex}"
    held: list[Msg] = []

    async def hold(msg: Msg) -> None:
        held.append(msg)

    await connection.subscribe(subject, cb=hold)
    with pytest.raises(NatsTimeoutError):
        await requester.request(subject, b"{}", 0.2)
    assert requester.pending == 0
    await held[0].respond(b"late")  # its request is gone: nothing to resolve, nothing raised
    await connection.flush()
    subject_two = f"test.echo.{uuid.uuid4().hex}"
    await echo_with_delay(connection, subject_two)
    assert (await requester.request(subject_two, b"7", 5.0)).data == b"7"


async def test_a_cancelled_request_leaves_nothing_behind(requester: Requester, connection: Client) -> None:
    subject = f"test.silent.{uuid.uuid4().hex}"

    async def ignore(msg: Msg) -> None:
        return None

    await connection.subscribe(subject, cb=ignore)
    waiting = asyncio.create_task(requester.request(subject, b"{}", 30.0))
    await asyncio.sleep(0.1)
    assert requester.pending == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert requester.pending == 0


async def test_replies_go_only_to_the_requester_inbox(nats: NatsServer, requester: Requester) -> None:
    """Another connection's requests, on the same subject, never resolve this requester's futures."""
    subject = f"test.echo.{uuid.uuid4().hex}"
    other = await nats_client.connect(nats.url)
    try:
        await echo_with_delay(other, subject)
        mine, theirs = await asyncio.gather(
            requester.request(subject, b"1", 5.0), other.request(subject, b"2", timeout=5.0)
        )
        assert (mine.data, theirs.data) == (b"1", b"2")
    finally:
        await other.close()


async def test_bus_request_maps_the_requester_failures_to_error_replies(requester: Requester) -> None:
    reply = await bus.request(requester, f"test.nobody.{uuid.uuid4().hex}", b"{}", timeout=5.0)
    assert reply.error is not None and reply.error.code == ErrorCode.SERVICE_UNAVAILABLE


async def test_requests_before_start_are_refused(connection: Client) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        await Requester(connection).request("test.any", b"{}", 1.0)


async def test_a_closed_connection_is_a_bus_failure_not_a_hang(nats: NatsServer) -> None:
    client = await nats_client.connect(nats.url)
    requester = Requester(client)
    await requester.start()
    await client.close()
    reply = await asyncio.wait_for(bus.request(requester, "test.any", b"{}", timeout=5.0), 2.0)
    assert reply.error is not None and reply.error.code == ErrorCode.SERVICE_UNAVAILABLE
