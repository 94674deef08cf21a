"""``/ws`` carries ``file.changed`` to the owner's sockets only, one per committed batch: a burst of
many files is a handful of pushes, not one per file."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType

from tests.file_event.helpers import User as FileUser
from tests.file_event.helpers import change, connect, consumed, files_ctx, member_of, new_user, publish, subject_of
from tests.support import Gateway

BURST = 600


async def socket(gateway: Gateway, user: FileUser) -> aiohttp.ClientWebSocketResponse:
    url = f"{gateway.api}/ws".replace("http://", "ws://") + f"?access_token={user.token}"
    ws = await gateway.session.ws_connect(url)
    ready = await next_push(ws)
    assert ready["type"] == "live.ready", ready
    return ws


async def next_push(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> dict[str, Any]:
    message = await ws.receive(timeout=timeout)
    assert message.type is WSMsgType.TEXT, message
    return dict(orjson.loads(message.data))


async def pushes_within(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[dict[str, Any]]:
    found = []
    while True:
        try:
            found.append(await next_push(ws, timeout=seconds))
        except TimeoutError:
            return found


async def test_owner_gets_coalesced_file_changed_and_nobody_else_does(system: Gateway) -> None:
    owner, stranger = await new_user(system), await new_user(system)
    colleague = await member_of(system, owner)
    sockets = [await socket(system, u) for u in (owner, stranger, colleague)]
    events = [change(f"burst/{i:04}.txt", second=i / 1000, actor="claude-code") for i in range(BURST)]
    nc = await connect(system)
    try:
        await publish(nc, subject_of(owner), events)
    finally:
        await nc.close()
    await consumed(system, BURST)
    batches = files_ctx(system).stats.transactions

    received = await pushes_within(sockets[0], 1.5)
    assert received and all(p["type"] == "file.changed" for p in received)
    assert sum(p["data"]["count"] for p in received) == BURST
    assert len(received) <= batches < BURST / 10  # coalesced: one push per committed batch
    first = received[0]["data"]
    assert UUID(first["user_id"]) == UUID(owner.id) and first["actors"] == ["claude-code"]
    assert len(first["changes"]) <= 100 and first["changes"][0]["path"] == "burst/0000.txt"
    for ws in sockets[1:]:
        assert await pushes_within(ws, 0.5) == []
    for ws in sockets:
        await ws.close()


@pytest.fixture
def file_event_overrides() -> dict[str, Any]:
    return {"ingest_batch_size": 200, "ingest_fetch_timeout_seconds": 0.2}
