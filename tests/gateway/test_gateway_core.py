"""Gateway core: health, readiness, OpenAPI, request ids and the error envelope for every error."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from services.gateway.settings import GatewaySettings
from tests.support import Gateway, NatsServer, free_port, running_gateway


@pytest.fixture
async def bare_gateway(nats: NatsServer, tmp_path: Path) -> AsyncIterator[Gateway]:
    """The gateway on a real NATS with no service running."""
    settings = GatewaySettings(nats_url=nats.url, data_dir=tmp_path, gateway_port=free_port(), log_level="WARNING")
    async with running_gateway(settings) as gateway:
        yield gateway


async def test_health_answers_the_exact_v5_body(bare_gateway: Gateway) -> None:
    async with bare_gateway.session.get(f"{bare_gateway.api}/health") as response:
        assert response.status == 200
        assert await response.json() == {"success": True, "data": {"service": "coditect-v5-api", "status": "healthy"}}
        assert response.headers["X-Request-ID"]


async def test_ready_is_503_naming_every_missing_service_within_a_second(bare_gateway: Gateway) -> None:
    started = time.monotonic()
    async with bare_gateway.session.get(f"{bare_gateway.api}/ready") as response:
        body = await response.json()
    assert time.monotonic() - started < 1.0
    assert response.status == 503
    assert body["error"]["code"] == "SERVICE_UNAVAILABLE"
    # Right after start the revocation list may still be loading: it is named too, but nothing else is.
    assert set(body["error"]["details"]["down"]) - {"revocations"} == {
        "auth",
        "session",
        "provisioning",
        "file_event",
        "audit",
    }
    assert "auth" in body["error"]["message"]


async def test_ready_is_200_when_every_service_answers(system: Gateway) -> None:
    async with system.session.get(f"{system.api}/ready") as response:
        body = await response.json()
    assert response.status == 200, body
    assert body["data"]["services"] == dict.fromkeys(("auth", "session", "provisioning", "file_event", "audit"), "ok")


async def test_ready_names_a_service_that_stopped(system: Gateway) -> None:
    await system.services["audit"].shutdown()
    async with system.session.get(f"{system.api}/ready") as response:
        body = await response.json()
    assert response.status == 503
    assert body["error"]["details"]["down"] == ["audit"]


async def test_a_route_whose_service_is_down_is_a_fast_503(bare_gateway: Gateway) -> None:
    started = time.monotonic()
    async with bare_gateway.session.get(f"{bare_gateway.api}/ping/session") as response:
        body = await response.json()
    assert time.monotonic() - started < 1.0
    assert response.status == 503
    assert body["error"]["code"] == "SERVICE_UNAVAILABLE"


async def test_ping_goes_through_the_bus_to_the_service(system: Gateway) -> None:
    async with system.session.get(f"{system.api}/ping/session", params={"echo": "hi"}) as response:
        body = await response.json()
    assert response.status == 200
    assert body["data"]["service"] == "session" and body["data"]["echo"] == "hi"
    assert body["data"]["store"] == "ok"


async def test_gateway_without_nats_answers_health_and_reports_not_ready(tmp_path: Path) -> None:
    settings = GatewaySettings(
        nats_url=f"nats://127.0.0.1:{free_port()}", data_dir=tmp_path, gateway_port=free_port(), log_level="WARNING"
    )
    async with running_gateway(settings) as gateway:
        async with gateway.session.get(f"{gateway.api}/health") as response:
            assert response.status == 200
        started = time.monotonic()
        async with gateway.session.get(f"{gateway.api}/ready") as response:
            body = await response.json()
        assert time.monotonic() - started < 1.0
        assert response.status == 503
        assert body["error"]["details"]["bus"] == "not connected"
        async with gateway.session.post(f"{gateway.api}/auth/login", json={"email": "a@b.io", "password": "x"}) as r:
            assert r.status == 503


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("GET", "/nope", {}, 404, "NOT_FOUND"),
        ("DELETE", "/health", {}, 405, "METHOD_NOT_ALLOWED"),
        (
            "POST",
            "/auth/login",
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "MALFORMED_JSON",
        ),
        (
            "POST",
            "/auth/login",
            {"data": b"email=a", "headers": {"Content-Type": "text/plain"}},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        ("POST", "/auth/login", {"json": [1, 2]}, 422, "VALIDATION_FAILED"),
        (
            "POST",
            "/auth/login",
            {"data": b"{" + b" " * 2_000_000 + b"}", "headers": {"Content-Type": "application/json"}},
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        ("GET", "/users/me", {}, 401, "UNAUTHORIZED"),
        ("GET", "/users/me", {"headers": {"Authorization": "Basic abc"}}, 401, "UNAUTHORIZED"),
    ],
)
async def test_client_mistakes_get_the_json_error_envelope(
    bare_gateway: Gateway, method: str, path: str, kwargs: dict[str, object], status: int, code: str
) -> None:
    async with bare_gateway.session.request(method, f"{bare_gateway.api}{path}", **kwargs) as response:  # type: ignore[arg-type]
        assert response.status == status
        assert response.content_type == "application/json"
        body = await response.json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def test_request_id_is_echoed_and_generated(bare_gateway: Gateway) -> None:
    async with bare_gateway.session.get(f"{bare_gateway.api}/nope", headers={"X-Request-ID": "abc-123"}) as r:
        assert r.headers["X-Request-ID"] == "abc-123"
    async with bare_gateway.session.get(f"{bare_gateway.api}/health", headers={"X-Request-ID": "bad id\u00e9"}) as r:
        assert r.headers["X-Request-ID"] != "bad id\u00e9" and len(r.headers["X-Request-ID"]) == 36
    async with bare_gateway.session.get(f"{bare_gateway.api}/health") as r:
        assert r.headers["traceparent"].startswith("00-")


async def test_requests_no_route_takes_leave_with_the_envelope_allow_and_both_ids(bare_gateway: Gateway) -> None:
    async with bare_gateway.session.delete(f"{bare_gateway.api}/health") as r:
        assert r.status == 405
        assert r.headers["Allow"] == "GET"
        assert (await r.json())["error"]["code"] == "METHOD_NOT_ALLOWED"
        assert r.headers["X-Request-ID"] and r.headers["traceparent"].startswith("00-")
    async with bare_gateway.session.post(f"{bare_gateway.url}/elsewhere", headers={"X-Request-ID": "r-1"}) as r:
        assert r.status == 404
        assert (await r.json())["error"] == {"code": "NOT_FOUND", "message": "no route /elsewhere"}
        assert r.headers["X-Request-ID"] == "r-1" and r.headers["traceparent"].startswith("00-")


async def test_a_generated_request_id_is_the_id_of_the_trace_the_request_began(bare_gateway: Gateway) -> None:
    async with bare_gateway.session.get(f"{bare_gateway.api}/health") as r:
        request_id = uuid.UUID(r.headers["X-Request-ID"])
        assert request_id.version == 4
        assert r.headers["traceparent"].split("-")[1] == request_id.hex
    async with bare_gateway.session.get(f"{bare_gateway.api}/health") as again:
        assert again.headers["X-Request-ID"] != str(request_id)


async def test_trace_context_from_a_trusted_client_is_continued(nats: NatsServer, tmp_path: Path) -> None:
    settings = GatewaySettings(
        nats_url=nats.url,
        data_dir=tmp_path,
        gateway_port=free_port(),
        log_level="WARNING",
        gateway_trust_client_trace=True,
    )
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    async with running_gateway(settings) as gateway, gateway.session.get(f"{gateway.api}/health", headers=headers) as r:
        assert r.headers["traceparent"].split("-")[1] == trace_id


async def test_openapi_document_lists_the_routes(bare_gateway: Gateway) -> None:
    async with bare_gateway.session.get(f"{bare_gateway.api}/openapi.json") as response:
        document = await response.json()
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": "/api/v5"}]
    for path in ("/health", "/ready", "/auth/login", "/tenants/me/users", "/sessions/{id}"):
        assert path in document["paths"]
    login = document["paths"]["/auth/login"]["post"]
    schema_name = login["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(document["components"]["schemas"][schema_name]["properties"]) >= {"email", "password"}
    assert "caller" not in document["components"]["schemas"][schema_name]["properties"]


async def test_many_concurrent_requests_to_a_dead_service_do_not_hang(bare_gateway: Gateway) -> None:
    async def one() -> int:
        async with bare_gateway.session.get(f"{bare_gateway.api}/ping/auth") as response:
            return response.status

    started = time.monotonic()
    statuses = await asyncio.gather(*(one() for _ in range(50)))
    assert set(statuses) == {503}
    assert time.monotonic() - started < 3.0


async def test_ready_reports_each_embedded_stores_wal_and_checkpoints(system: Gateway) -> None:
    async with system.session.get(f"{system.api}/ready") as response:
        body = await response.json()
    assert response.status == 200, body
    stores = body["data"]["stores"]
    assert set(stores) == {"auth", "session", "provisioning", "file_event", "audit"}
    auth = stores["auth"]
    assert auth["wal_limit_bytes"] == 64 * 1024 * 1024
    assert 0 <= auth["wal_bytes"] < auth["wal_limit_bytes"]
    assert auth["seconds_since_checkpoint"] >= 0


def test_a_local_route_must_be_public() -> None:
    """A local route skips the token check along with the trace context: only a public one may."""
    from services.gateway.edge import Edge, EdgeTrace
    from services.gateway.routing import Route

    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    edge = Edge(verifier=None, tracing=EdgeTrace(trust_client=False, tracer=None))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be public"):
        edge.wrap(Route("GET", "/mine", handler, "a user's", access="user", local=True))
    edge.wrap(Route("GET", "/anyone", handler, "anyone's", access="public", local=True))
