"""Helpers for audit tests: events published straight to the bus, records read through the gateway."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import nats
import orjson

from contracts.events import Actor, Event
from services.audit.context import AuditContext
from shared.store import Store
from tests.session.helpers import User, call
from tests.support import Gateway


def audit_of(gateway: Gateway) -> AuditContext:
    ctx: AuditContext = gateway.services["audit"].ctx.components["audit"]
    return ctx


def audit_store(gateway: Gateway) -> Store:
    return audit_of(gateway).store


def synthetic(tenant: str, user: str | None = None, index: int = 0, **fields: Any) -> Event:
    return Event(
        type=fields.pop("type", "test.happened"),
        tenant_id=uuid.UUID(tenant),
        actor=Actor(kind="human", user_id=uuid.UUID(user) if user else None, ip="10.0.0.1"),
        target=fields.pop("target", f"thing:{index}"),
        data=fields.pop("data", {"index": index}),
        **fields,
    )


async def publish(nats_url: str, events: list[Event], *, msg_ids: bool = True) -> None:
    """Publish to the events stream, waiting for each ack (Nats-Msg-Id = event id unless told not to)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for event in events:
            headers = {"Nats-Msg-Id": str(event.id)} if msg_ids else None
            await js.publish(event.subject, event.model_dump_json().encode(), headers=headers)
    finally:
        await nc.close()


async def records(gateway: Gateway, user: User, **params: Any) -> list[dict[str, Any]]:
    """Every record the user may list, following cursors."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        status, body, _ = await call(gateway, "GET", "/audit/events", user, **query)
        assert status == 200, body
        found += body["data"]["items"]
        cursor = body["data"]["next_cursor"]
        if cursor is None:
            return found


async def wait_for(
    gateway: Gateway, user: User, count: int, timeout: float = 15.0, **params: Any
) -> list[dict[str, Any]]:
    """The user's records once there are at least ``count``."""
    deadline = time.monotonic() + timeout
    while True:
        found = await records(gateway, user, **params)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def verify(gateway: Gateway, user: User, **params: Any) -> dict[str, Any]:
    status, body, _ = await call(gateway, "GET", "/audit/verify", user, **params)
    assert status == 200, body
    return dict(body["data"])


async def export(gateway: Gateway, user: User, kind: str = "records") -> bytes:
    headers = {"Authorization": f"Bearer {user.token}"}
    async with gateway.session.get(f"{gateway.api}/audit/export", params={"kind": kind}, headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("application/x-ndjson")
        return await response.read()


async def wait_checkpoint(gateway: Gateway, tenant: str, seq: int, timeout: float = 10.0) -> dict[str, Any]:
    """The newest stored checkpoint of the tenant once it reaches ``seq``."""
    from services.audit import repository as repo

    store = audit_store(gateway)
    deadline = time.monotonic() + timeout
    while True:
        last = await store.run(lambda tx: repo.last_checkpoint_seq(tx, tenant))
        pending = await store.run(lambda tx: repo.pending_checkpoints(tx, 10))
        if last >= seq and not pending:
            found = await store.run(lambda tx, at=last: repo.checkpoint(tx, tenant, at))
            assert found is not None
            return found
        assert time.monotonic() < deadline, f"no published checkpoint at seq >= {seq} (last {last})"
        await asyncio.sleep(0.05)


def lines(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]
