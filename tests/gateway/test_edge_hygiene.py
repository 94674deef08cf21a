"""What the edge keeps to itself: hosts and pids stay off public routes."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from nats.aio.msg import Msg

from contracts import subjects
from contracts.envelope import ErrorCode, Reply
from services.gateway.deps import BUS_KEY
from tests.support import Gateway

HOSTNAME = socket.gethostname()
PID = str(os.getpid())
INTERNALS = f"sqlite at /srv/{HOSTNAME}/store is locked by pid {PID} ({HOSTNAME}-{PID})"


def assert_no_internals(text: str) -> None:
    """Neither the host name nor the pid (services run in the test's process) appear in a public body."""
    tokens = set(re.split(r"[^A-Za-z0-9.]+", text))
    assert f"{HOSTNAME}-{PID}" not in text
    assert HOSTNAME not in tokens, text
    assert PID not in tokens, text
    assert "sqlite" not in text and "/srv/" not in text, text


@asynccontextmanager
async def impostor(gateway: Gateway, service: str, answer: Callable[[], bytes]) -> AsyncIterator[None]:
    """Answer ``service``'s ping in its place (the real one must be stopped first)."""
    connection = gateway.app[BUS_KEY].broker.config.connection_state.connection

    async def respond(message: Msg) -> None:
        await message.respond(answer())

    callback: Callable[[Msg], Awaitable[None]] = respond
    subscription = await connection.subscribe(subjects.ping(service), cb=callback)
    await connection.flush()
    try:
        yield
    finally:
        await subscription.unsubscribe()


async def get_text(gateway: Gateway, path: str) -> tuple[int, str, Any]:
    async with gateway.session.get(f"{gateway.api}{path}") as response:
        text = await response.text()
        return response.status, text, await response.json()


async def test_ping_replies_carry_no_host_or_process_id(system: Gateway) -> None:
    for service in subjects.SERVICES:
        status, text, body = await get_text(system, f"/ping/{service}?echo=hi")
        assert status == 200, body
        assert body["data"] == {"service": service, "status": "ok", "store": "ok", "echo": "hi"}
        assert_no_internals(text)


async def test_ready_carries_no_host_or_process_id_when_ready(system: Gateway) -> None:
    status, text, body = await get_text(system, "/ready")
    assert status == 200, body
    assert_no_internals(text)


async def test_a_failing_service_is_named_by_ready_without_its_error_text(
    system: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    await system.services["audit"].shutdown()
    failure = Reply.failure(ErrorCode.INTERNAL, INTERNALS).model_dump_json().encode()
    async with impostor(system, "audit", lambda: failure):
        status, text, body = await get_text(system, "/ready")
        assert status == 503
        assert body["error"]["details"]["down"] == ["audit"]
        assert body["error"]["details"]["services"]["audit"] == "failing"
        assert "audit" in body["error"]["message"]
        assert_no_internals(text)

        status, text, body = await get_text(system, "/ping/audit")
        assert status == 500 and body["error"]["code"] == "INTERNAL"
        assert_no_internals(text)
    assert INTERNALS in caplog.text  # operators still learn what went wrong


async def test_a_degraded_replica_is_named_without_its_instance(
    system: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    await system.services["audit"].shutdown()
    pong = Reply.success(
        {"service": "audit", "instance": f"{HOSTNAME}-{PID}", "status": "degraded", "store": "unavailable"}
    )
    async with impostor(system, "audit", lambda: pong.model_dump_json().encode()):
        status, text, body = await get_text(system, "/ready")
        assert status == 503
        assert body["error"]["details"]["services"]["audit"] == "store unavailable"
        assert_no_internals(text)

        status, text, body = await get_text(system, "/ping/audit")
        assert status == 200
        assert body["data"] == {"service": "audit", "status": "degraded", "store": "unavailable", "echo": None}
        assert_no_internals(text)
    assert f"{HOSTNAME}-{PID}" in caplog.text
