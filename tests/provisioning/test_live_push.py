"""The user's own workspace events reach their ``/ws`` sockets (and nobody else's)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import ClientWebSocketResponse, WSMsgType

from tests.provisioning.helpers import wait_status
from tests.session.helpers import User, call, new_user
from tests.support import Gateway


async def _socket(gateway: Gateway, user: User) -> ClientWebSocketResponse:
    url = f"{gateway.api}/ws".replace("http://", "ws://") + f"?access_token={user.token}"
    ws = await gateway.session.ws_connect(url)
    ready = orjson.loads((await ws.receive(timeout=10)).data)
    assert ready["type"] == "live.ready", ready
    return ws


async def _pushes(ws: ClientWebSocketResponse, until: str, seconds: float = 15) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while not any(p["type"] == until for p in found):
        message = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        assert message.type is WSMsgType.TEXT, message
        found.append(orjson.loads(message.data))
    return found


async def test_a_reprovision_is_pushed_to_its_user_only(system: Gateway) -> None:
    owner, other = await new_user(system), await new_user(system)
    await wait_status(system, owner, "ready")
    await wait_status(system, other, "ready")
    mine, theirs = await _socket(system, owner), await _socket(system, other)
    try:
        assert (await call(system, "POST", "/workspaces/me/reprovision", owner))[0] == 202
        pushes = await _pushes(mine, "workspace.provisioned")
        assert [p["type"] for p in pushes] == ["workspace.requested", "workspace.provisioned"]
        assert pushes[-1]["data"]["user_id"] == owner.id
        assert pushes[-1]["data"]["workspace"]["status"] == "ready"
        assert pushes[-1]["data"]["workspace"]["details"]["path"]
        try:
            message = await theirs.receive(timeout=0.5)
        except TimeoutError:
            message = None
        assert message is None, "another user's socket hears nothing"
    finally:
        await mine.close()
        await theirs.close()
