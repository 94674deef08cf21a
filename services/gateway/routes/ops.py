"""Operations routes: health, readiness, OpenAPI, a ping through the bus."""

from __future__ import annotations

import asyncio

from aiohttp import web

from contracts import subjects
from contracts.envelope import ErrorCode, Reply
from contracts.health import Ping
from services.gateway.deps import BUS_KEY, SETTINGS_KEY, call
from services.gateway.http import ApiError, json_response, ok
from services.gateway.middleware import VERIFIER_KEY
from services.gateway.openapi import OPENAPI_KEY
from services.gateway.routing import Route
from services.gateway.tokens import JwksVerifier

HEALTH_BODY = {"success": True, "data": {"service": "coditect-v5-api", "status": "healthy"}}


async def health(request: web.Request) -> web.Response:
    return json_response(HEALTH_BODY)


def _service_state(reply: Reply) -> str:
    if reply.ok:
        return "ok" if reply.result.get("store") == "ok" else "store unavailable"
    assert reply.error is not None
    return {
        ErrorCode.SERVICE_UNAVAILABLE: "not answering (no responders)",
        ErrorCode.TIMEOUT: "not answering (timeout)",
    }.get(reply.error.code, reply.error.message)


def _revocation_state(request: web.Request) -> str:
    verifier = request.app[VERIFIER_KEY]
    if not isinstance(verifier, JwksVerifier):
        return "current"
    if verifier.revocations.current:
        return "current"
    return "not loaded" if verifier.revocations.staleness() is None else "stale"


async def ready(request: web.Request) -> web.Response:
    bus = request.app[BUS_KEY]
    timeout = request.app[SETTINGS_KEY].ready_timeout
    if not bus.connected:
        raise ApiError.of(
            ErrorCode.SERVICE_UNAVAILABLE,
            "not ready: the bus (NATS) is not connected",
            {"bus": "not connected", "services": {}},
        )
    replies = await asyncio.gather(
        *(bus.request(subjects.ping(name), Ping(), timeout=timeout) for name in subjects.SERVICES)
    )
    states = {name: _service_state(reply) for name, reply in zip(subjects.SERVICES, replies, strict=True)}
    down = [name for name, state in states.items() if state != "ok"]
    problems = [f"{name} {states[name]}" for name in down]
    revocations = _revocation_state(request)
    if revocations != "current":
        down.append("revocations")
        problems.append(f"token revocations {revocations}")
    if down:
        raise ApiError.of(
            ErrorCode.SERVICE_UNAVAILABLE,
            "not ready: " + ", ".join(problems),
            {"bus": "ok", "services": states, "revocations": revocations, "down": down},
        )
    return ok({"status": "ready", "bus": "ok", "revocations": "current", "services": states})


async def ping_service(request: web.Request) -> web.Response:
    service = request.match_info["service"]
    if service not in subjects.SERVICES:
        raise ApiError.of(ErrorCode.NOT_FOUND, f"no service {service!r}")
    echo = request.query.get("echo")
    return ok(await call(request, subjects.ping(service), Ping(echo=echo)))


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI_KEY])


ROUTES = [
    Route("GET", "/health", health, "Liveness: the gateway process answers", access="public", enveloped=False),
    Route("GET", "/ready", ready, "Readiness: the bus and every service answer", access="public"),
    Route("GET", "/openapi.json", openapi, "This OpenAPI 3.1 document", access="public", enveloped=False),
    Route("GET", "/ping/{service}", ping_service, "Ping one service through the bus", access="public", query=("echo",)),
]
