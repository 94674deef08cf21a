"""Revocation reaches every gateway through the event stream, and a new gateway rebuilds it."""

from __future__ import annotations

import asyncio

from services.gateway.settings import GatewaySettings
from tests.auth.helpers import get, post, registered_and_logged_in
from tests.support import Gateway, NatsServer, free_port, running_gateway


def _settings(nats: NatsServer, system: Gateway) -> GatewaySettings:
    data_dir = system.services["auth"].ctx.settings.data_dir
    return GatewaySettings(nats_url=nats.url, data_dir=data_dir, gateway_port=free_port(), log_level="WARNING")


async def _rejected_within(gateway: Gateway, token: str, seconds: float) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        status, body = await get(gateway, "/users/me", token)
        if status == 401 or asyncio.get_running_loop().time() > deadline:
            assert status == 401, body
            return dict(body["error"])
        await asyncio.sleep(0.02)


async def test_logout_on_one_gateway_is_enforced_by_another(system: Gateway, nats: NatsServer) -> None:
    async with running_gateway(_settings(nats, system)) as other:
        _, tokens = await registered_and_logged_in(system)
        assert (await get(other, "/users/me", tokens["access_token"]))[0] == 200
        assert (await post(system, "/auth/logout", {}, token=tokens["access_token"]))[0] == 204
        error = await _rejected_within(other, tokens["access_token"], 1.0)
        assert error["code"] == "TOKEN_REVOKED"


async def test_a_gateway_started_after_a_revocation_still_denies_the_token(system: Gateway, nats: NatsServer) -> None:
    _, tokens = await registered_and_logged_in(system)
    assert (await post(system, "/auth/logout", {}, token=tokens["access_token"]))[0] == 204
    async with running_gateway(_settings(nats, system)) as late:
        status, body = await get(late, "/users/me", tokens["access_token"])
        assert status == 401 and body["error"]["code"] == "TOKEN_REVOKED"


async def test_reuse_detected_through_one_gateway_is_enforced_by_another(system: Gateway, nats: NatsServer) -> None:
    async with running_gateway(_settings(nats, system)) as other:
        _, first = await registered_and_logged_in(system)
        status, body, _ = await post(system, "/auth/refresh", {"refresh_token": first["refresh_token"]})
        assert status == 200
        second = body["data"]
        assert (await get(other, "/users/me", second["access_token"]))[0] == 200
        status, body, _ = await post(system, "/auth/refresh", {"refresh_token": first["refresh_token"]})
        assert body["error"]["code"] == "REFRESH_TOKEN_REUSED"
        await _rejected_within(other, second["access_token"], 1.0)
