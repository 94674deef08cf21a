"""The idle sweep, with two replicas of the session service sweeping the same store: each idle
session is suspended once, with one ``session.updated`` event by the system; touched ones stay."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from services.session import sweep
from services.session.app import build
from services.session.context import SessionContext, utcnow
from services.session.settings import SessionSettings
from shared.store import Store
from tests.conftest import service_env
from tests.session.helpers import Gate, call, create, list_all, new_user, session_events
from tests.support import Gateway, NatsServer, start_service

IDLE = {"idle_suspend_after_seconds": 1.5, "idle_sweep_interval_seconds": 0.05}


@pytest.mark.parametrize("session_overrides", [IDLE])
async def test_two_replicas_suspend_each_idle_session_exactly_once(
    system: Gateway, nats: NatsServer, tmp_path: Path, session_overrides: dict[str, Any]
) -> None:
    settings = SessionSettings(**service_env(nats.url, tmp_path / "data"), **session_overrides)
    second = await start_service("session", settings, build(settings))
    try:
        user = await new_user(system)
        # Opened together, so they turn idle together and both replicas find them in the same sweeps.
        sessions = list(await asyncio.gather(*(create(system, user, f"s{i}") for i in range(12))))
        kept = sessions[0]

        async def keep_alive() -> None:
            while True:
                assert (await call(system, "POST", f"/sessions/{kept['id']}/touch", user))[0] == 200
                await asyncio.sleep(0.3)

        toucher = asyncio.create_task(keep_alive())
        try:
            deadline = time.monotonic() + 15
            while [s["id"] for s in await list_all(system, user, status="active")] != [kept["id"]]:
                assert time.monotonic() < deadline, "the idle sessions were not suspended"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # both replicas sweep about ten more times meanwhile
        finally:
            toucher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await toucher

        for session in sessions[1:]:
            events = await session_events(nats.url, session["id"], "evt.session.updated")
            assert len(events) == 1, f"{len(events)} suspensions of one session"
            (event,) = events
            assert event["actor"] == {"kind": "system", "user_id": None, "agent": None, "ip": None, "user_agent": None}
            assert event["data"]["user_id"] == user.id and event["tenant_id"] == user.tenant_id
            assert (event["data"]["session"]["status"], event["data"]["session"]["version"]) == ("suspended", 2)
            status, body, _ = await call(system, "GET", f"/sessions/{session['id']}", user)
            assert body["data"] == event["data"]["session"]
        assert await session_events(nats.url, kept["id"], "evt.session.updated") == []

        # Resuming is an access: the sweep leaves a resumed session alone until it is idle again.
        resumed = sessions[1]
        assert (await call(system, "PATCH", f"/sessions/{resumed['id']}", user, {"status": "active"}))[0] == 200
        await asyncio.sleep(0.6)
        status, body, _ = await call(system, "GET", f"/sessions/{resumed['id']}", user)
        assert body["data"]["status"] == "active"
        # Left alone, the session kept alive until now is suspended in its turn.
        deadline = time.monotonic() + 10
        while (await call(system, "GET", f"/sessions/{kept['id']}", user))[1]["data"]["status"] != "suspended":
            assert time.monotonic() < deadline, "a session touched before was never suspended"
            await asyncio.sleep(0.1)
    finally:
        await second.shutdown()


async def test_two_replicas_sweeping_at_the_same_instant_suspend_each_session_once(
    system: Gateway, nats: NatsServer, tmp_path: Path
) -> None:
    """The same race made certain: both sweeps read the idle sessions before either commits."""
    settings = SessionSettings(**service_env(nats.url, tmp_path / "data"))
    second = await start_service("session", settings, build(settings))
    try:
        user = await new_user(system)
        sessions = [await create(system, user, f"s{i}") for i in range(10)]
        replicas: list[SessionContext] = [
            system.services["session"].ctx.components["session"],
            second.ctx.components["session"],
        ]
        gate = Gate(replicas[0].store, parties=2)
        later = utcnow() + timedelta(hours=1)
        counts = await asyncio.gather(
            *(sweep.suspend_idle(dataclasses.replace(ctx, store=cast(Store, gate)), later) for ctx in replicas)
        )
        assert sorted(counts) == [0, 10]
        for session in sessions:
            events = await session_events(nats.url, session["id"], "evt.session.updated")
            assert [e["data"]["session"]["status"] for e in events] == ["suspended"]
    finally:
        await second.shutdown()
