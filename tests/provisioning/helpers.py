"""Helpers of the provisioning tests: workspace state over HTTP, file events read from the stream."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import orjson
from nats.js.errors import NotFoundError

from contracts import subjects
from tests.session.helpers import User, call
from tests.support import Gateway


async def workspace_of(gateway: Gateway, user: User) -> tuple[int, Any]:
    status, body, _ = await call(gateway, "GET", "/workspaces/me", user)
    return status, body


async def wait_status(gateway: Gateway, user: User, wanted: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        status, body = await workspace_of(gateway, user)
        if status == 200 and body["data"]["status"] == wanted:
            return dict(body["data"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"the workspace did not become {wanted}: {body}")


async def stream_messages(nats_url: str, stream: str, subject: str) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """Every message stored on a subject of a stream, oldest first, with its headers."""
    found: list[tuple[dict[str, Any], dict[str, str]]] = []
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        seq = 1
        while True:
            try:
                msg = await js.get_msg(stream, seq, subject=subject, next=True)
            except NotFoundError:
                return found
            found.append((orjson.loads(msg.data or b"{}"), dict(msg.headers or {})))
            assert msg.seq is not None
            seq = msg.seq + 1
    finally:
        await nc.close()


async def file_events(nats_url: str, subject: str) -> list[dict[str, Any]]:
    return [body for body, _ in await stream_messages(nats_url, subjects.FILE_EVENTS_STREAM, subject)]


async def wait_file_events(nats_url: str, subject: str, predicate: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The file events on ``subject`` once ``predicate(events)`` holds (else fail with what arrived)."""
    deadline = time.monotonic() + timeout
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        events = await file_events(nats_url, subject)
        if predicate(events):
            return events
        await asyncio.sleep(0.1)
    raise AssertionError(f"file events never matched; got {[(e['kind'], e['path']) for e in events]}")
