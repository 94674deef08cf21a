"""Revocation reaches every gateway through the event stream, and a new gateway rebuilds it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from services.gateway.edge import VERIFIER_KEY
from services.gateway.settings import GatewaySettings
from tests.auth.helpers import get, post, registered_and_logged_in
from tests.support import Gateway, NatsServer, free_port, running_gateway


def _settings(nats: NatsServer, system: Gateway) -> GatewaySettings:
    data_dir = system.services["auth"].ctx.settings.data_dir
    return GatewaySettings(nats_url=nats.url, data_dir=data_dir, gateway_port=free_port(), log_level="WARNING")


# Generous: the event usually arrives within milliseconds, but a loaded 2-core machine may take seconds.
STREAM_DEADLINE_SECONDS = 15.0


@contextlib.asynccontextmanager
async def _another_gateway(nats: NatsServer, system: Gateway) -> AsyncIterator[Gateway]:
    """A second gateway, used once it has rebuilt its deny set (it answers 503 until then, for 2 s at most)."""
    async with running_gateway(_settings(nats, system)) as gateway:
        assert await gateway.app[VERIFIER_KEY].revocations.wait_current(STREAM_DEADLINE_SECONDS)  # type: ignore[attr-defined]
        yield gateway


async def _rejected_eventually(gateway: Gateway, token: str) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + STREAM_DEADLINE_SECONDS
    while True:
        status, body = await get(gateway, "/users/me", token)
        if status == 401 or asyncio.get_running_loop().time() > deadline:
            assert status == 401, body
            return dict(body["error"])
        await asyncio.sleep(0.05)


async def test_logout_on_one_gateway_is_enforced_by_another(system: Gateway, nats: NatsServer) -> None:
    async with _another_gateway(nats, system) as other:
        _, tokens = await registered_and_logged_in(system)
        assert (await get(other, "/users/me", tokens["access_token"]))[0] == 200
        assert (await post(system, "/auth/logout", {}, token=tokens["access_token"]))[0] == 204
        error = await _rejected_eventually(other, tokens["access_token"])
        assert error["code"] == "TOKEN_REVOKED"


async def test_a_gateway_started_after_a_revocation_still_denies_the_token(system: Gateway, nats: NatsServer) -> None:
    _, tokens = await registered_and_logged_in(system)
    assert (await post(system, "/auth/logout", {}, token=tokens["access_token"]))[0] == 204
    async with _another_gateway(nats, system) as late:
        status, body = await get(late, "/users/me", tokens["access_token"])
        assert status == 401 and body["error"]["code"] == "TOKEN_REVOKED"


async def test_reuse_detected_through_one_gateway_is_enforced_by_another(system: Gateway, nats: NatsServer) -> None:
    async with _another_gateway(nats, system) as other:
        _, first = await registered_and_logged_in(system)
        status, body, _ = await post(system, "/auth/refresh", {"refresh_token": first["refresh_token"]})
        assert status == 200
        second = body["data"]
        assert (await get(other, "/users/me", second["access_token"]))[0] == 200
        status, body, _ = await post(system, "/auth/refresh", {"refresh_token": first["refresh_token"]})
        assert body["error"]["code"] == "REFRESH_TOKEN_REUSED"
        await _rejected_eventually(other, second["access_token"])
