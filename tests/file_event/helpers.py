"""Helpers for file-event tests: users with their workspace subject, monitor-style publishes, waits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import nats
import orjson
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from contracts import subjects
from contracts.provisioning import workspace_id
from services.file_event.context import FilesContext
from tests.session.helpers import User, call, list_all, member_of, new_user
from tests.support import Gateway

__all__ = ["User", "call", "member_of", "new_user"]

BASE_TIME = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def subject_of(user: User) -> str:
    tenant, user_id = UUID(user.tenant_id), UUID(user.id)
    return subjects.file_subject(tenant, user_id, workspace_id(tenant, user_id))


def change(path: str, kind: str = "created", *, second: float = 0, **fields: Any) -> dict[str, Any]:
    """A ``FileChange`` as a monitor sends it, at BASE_TIME + ``second``."""
    return {
        "event_id": str(uuid.uuid4()),
        "path": path,
        "kind": kind,
        "occurred_at": (BASE_TIME + timedelta(seconds=second)).isoformat(),
        **fields,
    }


async def connect(gateway: Gateway) -> Client:
    """A connection that may publish any workspace's subject (test-admin; a real monitor may publish
    only its own: tests/bus/test_monitor_credentials.py)."""
    assert gateway.nats is not None
    return await nats.connect(gateway.nats.url)


async def publish(nc: Client, subject: str, events: list[dict[str, Any]], *, msg_ids: bool = True) -> None:
    """Publish as a monitor: one JetStream message per change, ``Nats-Msg-Id`` = its event id (or a
    fresh id, as a monitor restarted past the duplicate window would), awaiting every ack."""
    js = nc.jetstream()
    acks = [
        await js.publish_async(
            subject,
            body if isinstance(body, bytes) else orjson.dumps(body),
            headers={"Nats-Msg-Id": str(body["event_id"]) if msg_ids and isinstance(body, dict) else str(uuid.uuid4())},
        )
        for body in events
    ]
    await asyncio.gather(*acks)


def files_ctx(gateway: Gateway) -> FilesContext:
    ctx: FilesContext = gateway.services["file_event"].ctx.components["file_event"]
    return ctx


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def consumed(gateway: Gateway, count: int, timeout: float = 20.0) -> None:
    """Until the consumer has handled ``count`` messages (stored, duplicates or dead-lettered)."""
    stats = files_ctx(gateway).stats

    async def done() -> bool:
        return stats.stored + stats.duplicates + stats.dead_lettered >= count

    await wait_for(done, timeout, f"{count} messages consumed (now {stats})")


async def all_events(gateway: Gateway, user: User, **params: Any) -> list[dict[str, Any]]:
    return await list_all(gateway, user, "/files/events", **params)


async def dead_letters(nats_url: str) -> list[tuple[bytes, dict[str, str]]]:
    found: list[tuple[bytes, dict[str, str]]] = []
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        seq = 1
        while True:
            try:
                msg = await js.get_msg(subjects.DEAD_LETTER_STREAM, seq, subject="deadletter.>", next=True)
            except NotFoundError:
                return found
            found.append((msg.data or b"", dict(msg.headers or {})))
            assert msg.seq is not None
            seq = msg.seq + 1
    finally:
        await nc.close()


async def get(gateway: Gateway, route: str, user: User, **params: Any) -> tuple[int, Any]:
    """A GET whose query may carry ``path`` (which ``call`` takes as the route)."""
    async with gateway.session.get(
        f"{gateway.api}{route}", headers={"Authorization": f"Bearer {user.token}"}, params=params or None
    ) as response:
        return response.status, await response.json()
