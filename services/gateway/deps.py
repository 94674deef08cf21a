"""What route handlers pull from the request and the app: the bus link, the caller, client info."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from contracts.envelope import ErrorCode
from contracts.identity import BusRequest, Caller
from services.gateway.buslink import BusLink
from services.gateway.client_address import ClientAddress
from services.gateway.edge import CALLER, REQUEST_ID
from services.gateway.http import ApiError, parse, unwrap
from services.gateway.settings import GatewaySettings
from shared import bus

BUS_KEY = web.AppKey("bus", BusLink)
SETTINGS_KEY = web.AppKey("settings", GatewaySettings)
CLIENT_ADDRESS_KEY = web.AppKey("client_address", ClientAddress)


def caller_of(request: web.Request) -> Caller:
    caller: Caller | None = request.get(CALLER)
    if caller is None:
        raise ApiError.of(ErrorCode.UNAUTHORIZED, "a bearer access token is required")
    return caller


def client_ip(request: web.Request) -> str | None:
    """The client's address: the TCP peer, or what a trusted proxy says it is (never anyone else)."""
    return request.app[CLIENT_ADDRESS_KEY].of(request)


def client_of(request: web.Request) -> dict[str, str | None]:
    """What the edge saw of the client, as the fields of ``ClientInfo`` (validated with the message)."""
    return {
        "ip": client_ip(request),
        "user_agent": request.headers.get("User-Agent"),
        "request_id": request.get(REQUEST_ID),
    }


async def call(request: web.Request, subject: str, payload: BaseModel | dict[str, Any]) -> Any:
    """Send a request over the bus and return its result, or raise the error it carries."""
    reply = await request.app[BUS_KEY].request(subject, payload)
    return unwrap(reply)


IDENTITY_FIELDS = frozenset({"caller", "client"})


async def send(
    request: web.Request, subject: str, model: type[BusRequest], data: dict[str, Any], *, timeout: float | None = None
) -> Any:
    """Validate at the edge, attach the verified caller (never the client's claim of one), and send
    (``timeout``: longer than the default for the few requests whose work grows with the data)."""
    return unwrap(await request.app[BUS_KEY].request(subject, _message(request, model, data), timeout=timeout))


async def send_for_json(request: web.Request, subject: str, model: type[BusRequest], data: dict[str, Any]) -> bytes:
    """``send`` for a route that passes the result on unread: the result's JSON as the service wrote
    it (not parsed, not encoded again), or the error it carries raised."""
    answer = await request.app[BUS_KEY].exchange(subject, _message(request, model, data))
    if isinstance(answer, bytes):
        result = bus.success_result(answer)
        if result is not None:
            return result
        answer = bus.parse_reply(subject, answer)
    return orjson.dumps(unwrap(answer))


def _message(request: web.Request, model: type[BusRequest], data: dict[str, Any]) -> Any:
    fields = {key: value for key, value in data.items() if key not in IDENTITY_FIELDS}
    fields["caller"] = request.get(CALLER)  # one validation for the whole message
    fields["client"] = client_of(request)
    return parse(model, fields)
