"""The session service as a separate process: kill -9 it under load and the gateway answers 503 at
once (no hang) while it is down; brought back, it has every session it acknowledged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.session.helpers import call, list_all, new_user
from tests.support import Gateway, NatsServer, ServiceProcess


@pytest.fixture
def session_in_process() -> bool:
    return False


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"request_timeout": 2.0}


@pytest.fixture
def session_process(nats: NatsServer, tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        nats, "session", tmp_path / "data", tmp_path / "session.log", CODITECT_MAX_ACTIVE_SESSIONS_PER_USER="100000"
    )
    try:
        yield process
    finally:
        process.stop()


async def _answering(system: Gateway) -> None:
    deadline = time.monotonic() + 30
    while True:
        async with system.session.get(f"{system.api}/ping/session") as response:
            if response.status == 200:
                return
        assert time.monotonic() < deadline, "the session service did not come up"
        await asyncio.sleep(0.1)


async def test_kill_9_answers_503_fast_while_down_and_loses_no_acknowledged_session(
    system: Gateway, session_process: ServiceProcess
) -> None:
    session_process.start()
    await _answering(system)
    user = await new_user(system)
    acknowledged: list[str] = []
    enough, down = asyncio.Event(), asyncio.Event()

    async def creator(worker: int) -> None:
        for i in range(10_000):
            status, body, _ = await call(system, "POST", "/sessions", user, {"name": f"w{worker} #{i}"})
            if status == 201:
                acknowledged.append(body["data"]["id"])
                if len(acknowledged) >= 40:
                    enough.set()
            elif down.is_set():
                return
            else:
                assert status in (503, 504), body

    workers = [asyncio.create_task(creator(w)) for w in range(4)]
    await asyncio.wait_for(enough.wait(), 30)
    session_process.kill()
    down.set()
    await asyncio.wait_for(asyncio.gather(*workers), 10)

    some_id = acknowledged[0]
    for method, path, payload in (
        ("GET", "/sessions", None),
        ("POST", "/sessions", {"name": "x"}),
        ("GET", f"/sessions/{some_id}", None),
        ("PATCH", f"/sessions/{some_id}", {"name": "x"}),
        ("POST", f"/sessions/{some_id}/touch", {}),
    ):
        started = time.monotonic()
        status, body, _ = await call(system, method, path, user, payload)
        assert (status, body["error"]["code"]) == (503, "SERVICE_UNAVAILABLE"), (method, path, body)
        assert time.monotonic() - started < 1.0, "a dead service must not hang requests"

    session_process.start()
    await _answering(system)
    listed = {s["id"] for s in await list_all(system, user, limit=500)}
    missing = [sid for sid in acknowledged if sid not in listed]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged sessions were lost"
    for sid in acknowledged[-5:]:
        status, body, _ = await call(system, "GET", f"/sessions/{sid}", user)
        assert status == 200, body
    assert (await call(system, "POST", "/sessions", user, {"name": "after the restart"}))[0] == 201
