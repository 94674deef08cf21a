"""What the edge keeps to itself and what it takes from callers: hosts and pids stay off public routes,
and an untrusted caller's trace context stops at the gateway."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import nats
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from nats.aio.msg import Msg
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace import TracerProvider

from contracts import auth, subjects
from contracts.envelope import ErrorCode, Reply
from services.gateway.edge import edge_for
from services.gateway.routing import Route
from services.gateway.settings import GatewaySettings
from shared.telemetry import setup_tracing
from tests.auth.helpers import PASSWORD, unique_email
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
    """Answer ``service``'s ping in its place (the real one must be stopped first), as test-admin:
    no process identity may answer another's subjects."""
    connection = await gateway.admin()

    async def respond(message: Msg) -> None:
        await message.respond(answer())

    callback: Callable[[Msg], Awaitable[None]] = respond
    subscription = await connection.subscribe(subjects.ping(service), cb=callback)
    await connection.flush()
    await connection.flush()  # one flush can overtake the SUB (see Dispatcher.start)
    try:
        yield
    finally:
        await subscription.unsubscribe()


async def get_text(gateway: Gateway, path: str) -> tuple[int, str, Any]:
    async with gateway.session.get(f"{gateway.api}{path}") as response:
        text = await response.text()
        return response.status, text, await response.json()


async def test_ping_replies_carry_no_host_or_process_id(system: Gateway) -> None:
    """With an echo (read in full) and without (a healthy answer's public part, kept by its bytes)."""
    for service in subjects.SERVICES:
        for echo in ("hi", None, None):
            status, text, body = await get_text(system, f"/ping/{service}" + (f"?echo={echo}" if echo else ""))
            assert status == 200, body
            assert body["data"] == {"service": service, "status": "ok", "store": "ok", "echo": echo}
            assert_no_internals(text)


async def test_pings_without_an_echo_share_an_answer_and_an_echo_is_always_its_own(system: Gateway) -> None:
    """A service answers echo-less pings with the answer made at its last store check; never an echo's."""
    for echo in (None, "a", None, "b", "b", None):
        status, _, body = await get_text(system, "/ping/auth" + (f"?echo={echo}" if echo else ""))
        assert (status, body["data"]["echo"], body["data"]["status"]) == (200, echo, "ok")


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


CLIENT_TRACE_ID = "5bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_HEADERS = {
    "traceparent": f"00-{CLIENT_TRACE_ID}-00f067aa0ba902b7-01",
    "tracestate": "vendor=client-chosen",
    "baggage": "tenant_id=someone-elses,role=admin",
}


def trace_id_of(traceparent: str) -> str:
    return traceparent.split("-")[1]


async def test_an_untrusted_callers_trace_context_stops_at_the_gateway(system: Gateway) -> None:
    """The response, the bus message and the event share a trace the gateway started, and no baggage."""
    assert system.nats is not None
    listener = await nats.connect(system.nats.url)  # test-admin: no process identity may listen here
    seen: asyncio.Queue[Msg] = asyncio.Queue()

    async def keep(message: Msg) -> None:
        await seen.put(message)

    callback: Callable[[Msg], Awaitable[None]] = keep
    await listener.subscribe(auth.REGISTER, cb=callback)
    await listener.flush()
    await listener.flush()  # one flush can overtake the SUB (see Dispatcher.start)
    try:
        async with system.session.post(
            f"{system.api}/auth/register",
            json={"email": unique_email(), "password": PASSWORD},
            headers=CLIENT_HEADERS,
        ) as response:
            assert response.status == 201
            user_id = (await response.json())["data"]["user"]["id"]
            trace_id = trace_id_of(response.headers["traceparent"])
        request = await asyncio.wait_for(seen.get(), 5)
    finally:
        await listener.close()
    assert trace_id != CLIENT_TRACE_ID
    headers = request.headers or {}
    assert trace_id_of(headers["traceparent"]) == trace_id
    assert "baggage" not in headers and "tracestate" not in headers

    js = await system.admin_js()
    subscription = await js.subscribe("evt.auth.user_registered", ordered_consumer=True)
    try:
        found = None
        while found is None:
            event = orjson.loads((await asyncio.wait_for(subscription.next_msg(timeout=2), 5)).data)
            if event["data"]["user_id"] == user_id:
                found = event
    finally:
        await subscription.unsubscribe()
    assert found["trace_id"] == trace_id


@pytest.fixture
def tracer_provider() -> None:
    """The middleware's tracer follows the global provider, which create_app sets in a real process."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        setup_tracing("gateway-test", None)


@pytest.mark.usefixtures("tracer_provider")
@pytest.mark.parametrize("exporting", [False, True], ids=["ids-only", "sdk-span"])
@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
async def test_the_edge_continues_a_callers_trace_only_when_trusted_and_never_its_baggage(
    exporting: bool, trusted: bool
) -> None:
    settings = GatewaySettings(
        gateway_trust_client_trace=trusted,
        otel_exporter_otlp_endpoint="http://127.0.0.1:4318" if exporting else None,
    )
    sent: dict[str, str] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        inject(sent)  # what a bus request made inside the handler would carry
        return web.Response()

    edge = edge_for(settings, verifier=None)  # type: ignore[arg-type]  # a public route never asks it
    wrapped = edge.wrap(Route("GET", "/health", handler, "a public route", access="public"))
    response = await wrapped(make_mocked_request("GET", "/api/v5/health", headers=CLIENT_HEADERS))
    trace_id = trace_id_of(response.headers["traceparent"])
    assert (trace_id == CLIENT_TRACE_ID) is trusted
    assert trace_id_of(sent["traceparent"]) == trace_id
    assert "baggage" not in sent
    assert ("tracestate" in sent) is trusted
