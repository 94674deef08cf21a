"""Revocation keeps reaching every gateway after NATS restarts (kill -9, same store), and a gateway
that cannot confirm it has every revocation refuses tokens instead of guessing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.gateway.deps import BUS_KEY
from services.gateway.settings import GatewaySettings
from tests.auth.helpers import get, post, registered_and_logged_in
from tests.support import Gateway, NatsServer, free_port, kill_nats, nats_without_jetstream, running_gateway


def _settings(nats: NatsServer, system: Gateway) -> GatewaySettings:
    data_dir = system.services["auth"].ctx.settings.data_dir
    return GatewaySettings(nats_url=nats.url, data_dir=data_dir, gateway_port=free_port(), log_level="WARNING")


async def _status_within(gateway: Gateway, token: str, wanted: int, seconds: float) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        status, body = await get(gateway, "/users/me", token)
        if status == wanted or loop.time() > deadline:
            assert status == wanted, body
            return dict(body.get("error") or body.get("data"))
        await asyncio.sleep(0.05)


async def _restart_nats(nats: NatsServer, *gateways: Gateway) -> None:
    kill_nats(nats)
    await asyncio.sleep(0.5)
    nats.start_again()
    for gateway in gateways:
        bus = gateway.app[BUS_KEY]
        for _ in range(200):
            if bus.connected:
                break
            await asyncio.sleep(0.05)
        assert bus.connected


async def test_revocations_reach_another_gateway_after_nats_restarts(system: Gateway, nats: NatsServer) -> None:
    async with running_gateway(_settings(nats, system)) as other:
        _, reused = await registered_and_logged_in(system)
        _, logged_out = await registered_and_logged_in(system)
        status, body, _ = await post(system, "/auth/refresh", {"refresh_token": reused["refresh_token"]})
        assert status == 200
        successor = body["data"]
        await _status_within(other, successor["access_token"], 200, 10)
        await _status_within(other, logged_out["access_token"], 200, 10)

        await _restart_nats(nats, system, other)
        # Services and gateways reconnect; wait until the other gateway answers again.
        await _status_within(other, successor["access_token"], 200, 15)

        status, body, _ = await post(system, "/auth/refresh", {"refresh_token": reused["refresh_token"]})
        assert status == 401 and body["error"]["code"] == "REFRESH_TOKEN_REUSED"
        error = await _status_within(other, successor["access_token"], 401, 2.0)
        assert error["code"] == "TOKEN_REVOKED"

        assert (await post(system, "/auth/logout", {}, token=logged_out["access_token"]))[0] == 204
        error = await _status_within(other, logged_out["access_token"], 401, 2.0)
        assert error["code"] == "TOKEN_REVOKED"


async def test_a_gateway_that_cannot_confirm_revocations_refuses_tokens_and_is_not_ready(
    system: Gateway, nats: NatsServer
) -> None:
    settings = _settings(nats, system).model_copy(update={"revocation_stale_after": 1.0})
    async with running_gateway(settings) as other:
        _, tokens = await registered_and_logged_in(system)
        # whoami answers from the token alone: only the revocation check can stop it.
        async with other.session.get(f"{other.api}/auth/whoami", headers=_bearer(tokens)) as response:
            assert response.status == 200
        kill_nats(nats)
        status, body = await _whoami_until(other, tokens, 503, 10)
        assert body["error"]["code"] == "SERVICE_UNAVAILABLE"
        nats.start_again()
        await _whoami_until(other, tokens, 200, 15)


async def test_ready_names_revocations_when_jetstream_is_missing(tmp_path: Path) -> None:
    with nats_without_jetstream(tmp_path) as bare:
        settings = GatewaySettings(nats_url=bare.url, data_dir=tmp_path, gateway_port=free_port(), log_level="WARNING")
        async with running_gateway(settings, wait_for_revocations=False) as gateway:
            await asyncio.sleep(1.0)
            async with gateway.session.get(f"{gateway.api}/ready") as response:
                body = await response.json()
            assert response.status == 503
            assert "revocations" in body["error"]["details"]["down"]
            assert body["error"]["details"]["revocations"] == "not loaded"


def _bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def _whoami_until(
    gateway: Gateway, tokens: dict[str, str], wanted: int, seconds: float
) -> tuple[int, dict[str, object]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        async with gateway.session.get(f"{gateway.api}/auth/whoami", headers=_bearer(tokens)) as response:
            status, body = response.status, await response.json()
        if status == wanted or loop.time() > deadline:
            assert status == wanted, body
            return status, body
        await asyncio.sleep(0.1)
