"""kill -9 of the provisioning service in the middle of provisioning: after a restart the workspace
ends ready (its claim runs out, the reconcile loop picks it up), with one workspace and one monitor."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import nats as nats_client
import pytest

from contracts import auth, subjects
from contracts import provisioning as api
from contracts.events import Event
from contracts.health import Ping
from contracts.identity import Caller
from shared import bus
from tests.provisioning.helpers import stream_messages
from tests.support import NatsServer


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.provisioning"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _until(nc: Any, predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await predicate(nc)
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not happen in {timeout:g}s (last: {last})")


async def test_kill_9_mid_provisioning_ends_ready_after_a_restart(
    nats: NatsServer, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "CODITECT_NATS_URL": nats.url,
        "CODITECT_DATA_DIR": str(data),
        "CODITECT_LOG_LEVEL": "WARNING",
        "CODITECT_PROVISIONING_LEASE_SECONDS": "5",
        "CODITECT_PROVISIONING_RECONCILE_INTERVAL_SECONDS": "0.3",
        "CODITECT_PROVISIONING_STEP_DELAY_SECONDS": "30",
    }
    log = tmp_path / "provisioning.log"
    processes.append(_spawn(env, log))
    tenant, user = uuid4(), uuid4()
    caller = Caller(tenant_id=tenant, user_id=user, session_id=uuid4())
    workspace_id = api.workspace_id(tenant, user)

    async def answers(nc: Any) -> bool:
        return (await bus.request(nc, subjects.ping(api.SERVICE), Ping(), timeout=1)).ok

    async def status(nc: Any) -> str | None:
        reply = await bus.request(nc, api.GET, api.GetWorkspace(caller=caller), timeout=2)
        return reply.result["status"] if reply.ok else None

    nc = await nats_client.connect(nats.url)
    try:
        await _until(nc, answers, 20, "the service answering")
        event = Event(type=auth.USER_REGISTERED, tenant_id=tenant, data={"user_id": str(user)})
        await nc.jetstream().publish(
            event.subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": str(event.id)}
        )
        await _until(nc, lambda c: _is(status, c, "provisioning"), 10, "provisioning to start")

        processes[0].send_signal(signal.SIGKILL)
        processes[0].wait()
        assert await status(nc) is None  # nobody answers now
        env["CODITECT_PROVISIONING_STEP_DELAY_SECONDS"] = "0"
        processes.append(_spawn(env, log))
        await _until(nc, lambda c: _is(status, c, "ready"), 20, "the workspace becoming ready")
        reply = await bus.request(nc, api.GET, api.GetWorkspace(caller=caller), timeout=2)
    finally:
        await nc.close()
    workspace = api.Workspace.model_validate(reply.result)
    assert workspace.attempts >= 2, "the killed attempt counts"
    assert Path(workspace.details["path"]).is_dir()  # noqa: ASYNC240
    assert Path(data / "monitors" / str(workspace_id) / "monitor.ready").exists()  # noqa: ASYNC240
    found = await stream_messages(nats.url, subjects.EVENTS_STREAM, "evt.workspace.>")
    assert [e["type"] for e, _ in found] == ["workspace.requested", "workspace.provisioned"]


async def _is(status: Any, nc: Any, wanted: str) -> bool:
    return bool(await status(nc) == wanted)
