"""Operations routes: health, readiness, OpenAPI, a ping through the bus."""

from __future__ import annotations

import asyncio
import logging

import orjson
from aiohttp import web
from pydantic import ValidationError

from contracts import subjects
from contracts.envelope import ErrorCode, Reply
from contracts.health import Ping, ServiceHealth
from services.gateway.deps import BUS_KEY, SETTINGS_KEY
from services.gateway.edge import VERIFIER_KEY
from services.gateway.http import ApiError, json_response, ok, ok_json
from services.gateway.openapi import OPENAPI_KEY
from services.gateway.routing import Route
from services.gateway.tokens import JwksVerifier
from shared import bus
from shared.decoded import DecodedCache

log = logging.getLogger(__name__)

HEALTH_BODY = {"success": True, "data": {"service": "coditect-v5-api", "status": "healthy"}}
_HEALTH_JSON = orjson.dumps(HEALTH_BODY)


async def health(request: web.Request) -> web.Response:
    return web.Response(body=_HEALTH_JSON, content_type="application/json")


# Public routes name a failure with these words only: the error text a service sends may carry hosts,
# paths or pids, and goes to the gateway's log instead.
_FAILURE_BY_CODE = {
    ErrorCode.SERVICE_UNAVAILABLE: "not answering (no responders)",
    ErrorCode.TIMEOUT: "not answering (timeout)",
}


def _service_state(name: str, reply: Reply) -> str:
    """The state a public route may show; what went wrong inside goes to the log."""
    if reply.ok:
        result = reply.result if isinstance(reply.result, dict) else {}
        if result.get("store") == "ok":
            return "ok"
        log.warning("%s (instance %s) answers without its store", name, result.get("instance"))
        return "store unavailable"
    assert reply.error is not None
    known = _FAILURE_BY_CODE.get(reply.error.code)
    if known is not None:
        return known
    log.warning("%s ping failed: %s %s", name, reply.error.code, reply.error.message)
    return "failing"


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
    states = {name: _service_state(name, reply) for name, reply in zip(subjects.SERVICES, replies, strict=True)}
    stores = {name: _store_figures(reply) for name, reply in zip(subjects.SERVICES, replies, strict=True)}
    stores = {name: figures for name, figures in stores.items() if figures}
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
            {"bus": "ok", "services": states, "revocations": revocations, "stores": stores, "down": down},
        )
    return ok({"status": "ready", "bus": "ok", "revocations": "current", "services": states, "stores": stores})


def _store_figures(reply: Reply) -> dict[str, float]:
    """The embedded store's WAL size, bound and checkpoint lag: numbers only, no paths or hosts."""
    result = reply.result if reply.ok and isinstance(reply.result, dict) else {}
    figures = result.get("store_stats") or {}
    return {k: v for k, v in figures.items() if isinstance(k, str) and isinstance(v, int | float)}


_PING_SUBJECTS = {name: subjects.ping(name) for name in subjects.SERVICES}
_PING_WITHOUT_ECHO = Ping().model_dump_json().encode()


def _healthy_ping_result(raw: bytes) -> bytes | None:
    """The public result of a healthy service's ping reply (only ``ServiceHealth``'s fields), or None
    when the reply is anything else (then the route reads it in full, and logs what it must)."""
    try:
        reply = Reply.model_validate_json(raw)
    except ValidationError:
        return None
    if not reply.ok or not isinstance(reply.result, dict) or reply.result.get("store") != "ok":
        return None
    try:
        health = ServiceHealth.model_validate(reply.result)
    except ValidationError:
        return None
    return health.__pydantic_serializer__.to_json(health)


# A service answers pings without an echo from the answer it made at its last store check (the same
# bytes for a second), so the gateway reads each distinct answer once: a ping through the bus costs
# no reply models then (README, "Benchmarks"). A handful: one live answer per service and replica.
_HEALTHY_PINGS = DecodedCache(_healthy_ping_result, size=32)


async def ping_service(request: web.Request) -> web.Response:
    service = request.match_info["service"]
    subject = _PING_SUBJECTS.get(service)
    if subject is None:
        raise ApiError.of(ErrorCode.NOT_FOUND, f"no service {service!r}")
    echo = request.query.get("echo") if request.query_string else None
    bus_link = request.app[BUS_KEY]
    if echo is None:
        answer = await bus_link.exchange(subject, _PING_WITHOUT_ECHO)
        result = _HEALTHY_PINGS(answer) if isinstance(answer, bytes) else None
        if result is not None:
            return ok_json(result)
        reply = answer if isinstance(answer, Reply) else bus.parse_reply(subject, answer)
    else:
        reply = await bus_link.request(subject, Ping(echo=echo))
    state = _service_state(service, reply)
    if reply.error is not None:
        raise ApiError.of(reply.error.code, f"{service} is {state}")
    log.debug("%s answered a ping from instance %s", service, reply.result.get("instance"))
    # Only what ServiceHealth holds leaves: the instance (host and pid) stays on the bus and in logs.
    return ok(ServiceHealth.model_validate(reply.result))


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI_KEY])


ROUTES = [
    Route(
        "GET", "/health", health, "Liveness: the gateway process answers", access="public", enveloped=False, local=True
    ),
    Route("GET", "/ready", ready, "Readiness: the bus and every service answer", access="public"),
    Route("GET", "/openapi.json", openapi, "This OpenAPI 3.1 document", access="public", enveloped=False, local=True),
    Route(
        "GET",
        "/ping/{service}",
        ping_service,
        "Ping one service through the bus",
        access="public",
        response=ServiceHealth,
        query=("echo",),
    ),
]
