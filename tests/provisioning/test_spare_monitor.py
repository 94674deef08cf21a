"""A warm spare: the local backend keeps one monitor process started (its imports done, waiting on its
stdin), hands it the next workspace through that pipe and starts another spare. A workspace is ready
once its monitor watches it, and a monitor's start-up (Python and its imports) was most of that time."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from contracts import subjects
from services.provisioning.backends.monitors import MonitorChild, pid_file
from services.provisioning.monitor_env import monitor_environment
from services.provisioning.settings import ProvisioningSettings
from tests.provisioning.helpers import wait_file_events, wait_status
from tests.session.helpers import new_user
from tests.support import Gateway, NatsServer


def _backend(system: Gateway) -> Any:
    return system.services["provisioning"].ctx.components["provisioning"].backend


def _seed_of(state_dir: Path) -> bytes | None:
    seed_file = state_dir / "nats.nk"
    return seed_file.read_bytes().strip() if seed_file.exists() else None


def _started_with(pid: int) -> bytes:
    """A process's command line and initial environment."""
    return Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()


def _output_of(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/fd/2")


async def _spare(backend: Any, not_pid: int | None = None, timeout: float = 20.0) -> subprocess.Popen[bytes]:
    """The backend's spare monitor once one runs (another than ``not_pid``)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        spare = backend.monitors.spare
        if spare is not None and spare.poll() is None and spare.pid != not_pid:
            return spare  # type: ignore[no-any-return]
        assert asyncio.get_running_loop().time() < deadline, "no spare monitor was started"
        await asyncio.sleep(0.05)


async def test_a_new_workspace_is_handed_the_spare_monitor_and_another_spare_is_started(
    system: Gateway, nats: NatsServer
) -> None:
    backend = _backend(system)
    spare = await _spare(backend)
    user = await new_user(system)
    workspace = await wait_status(system, user, "ready")
    workspace_id = UUID(workspace["id"])
    child = backend.monitors.children[workspace_id]
    assert child.process.pid == spare.pid, "the workspace got the waiting spare, not a new process"
    state_dir = backend.state_dir_of(workspace_id)
    assert int(pid_file(state_dir).read_text()) == spare.pid
    # Its identity came through the pipe: no seed in its environment or command line.
    seed = _seed_of(state_dir)
    assert seed is None or seed not in _started_with(spare.pid)
    # It watches and publishes as the workspace's monitor, and logs to the workspace's log.
    root = Path(workspace["details"]["path"])
    (root / "handed-over.txt").write_text("seen")
    subject = subjects.file_subject(user.tenant_id, user.id, workspace["id"])
    await wait_file_events(nats.url, subject, lambda evs: [e["path"] for e in evs] == ["handed-over.txt"])
    assert _output_of(spare.pid) == str(state_dir / "monitor.log")
    await _spare(backend, not_pid=spare.pid)  # and the next workspace has a spare waiting again


async def test_a_dead_spare_is_replaced_and_a_removed_workspace_stops_its_handed_over_monitor(
    system: Gateway, nats: NatsServer
) -> None:
    backend = _backend(system)
    first = await _spare(backend)
    os.kill(first.pid, signal.SIGKILL)
    second = await _spare(backend, not_pid=first.pid)
    user = await new_user(system)
    workspace = await wait_status(system, user, "ready")
    workspace_id = UUID(workspace["id"])
    state_dir = backend.state_dir_of(workspace_id)
    assert backend.monitors.children[workspace_id].process.pid == second.pid
    # A provisioning restart forgets its children: deprovisioning still finds the process by its lock.
    backend.monitors.children.pop(workspace_id)
    await backend.monitors.stop(workspace_id, state_dir)
    assert second.wait(10) is not None, "the handed-over monitor was stopped through its pid file"


async def test_a_monitor_started_afresh_never_waits_for_a_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a spare waits on its stdin: a monitor started with its workspace (no spare alive) watches at
    once, whatever the service's own environment says about spares (``CODITECT_MONITOR_SPARE=1`` is the
    service's setting that turns spares on)."""
    monkeypatch.setenv("CODITECT_MONITOR_SPARE", "1")
    monkeypatch.setenv("CODITECT_MONITOR_AWAIT_WORKSPACE", "1")  # and what marks a spare, leaked to the service
    root, state = tmp_path / "tree", tmp_path / "state"
    root.mkdir()
    env = monitor_environment(
        ProvisioningSettings(nats_url="nats://127.0.0.1:9"),  # no bus: it buffers on disk and still watches
        tenant_id=uuid4(),
        user_id=uuid4(),
        workspace_id=uuid4(),
        root=root,
        state_dir=state,
    )
    child = MonitorChild(uuid4(), state, env)
    child.start()
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while not child.watching():
            assert child.process is not None and child.process.poll() is None, "the monitor exited"
            assert asyncio.get_running_loop().time() < deadline, "the monitor did not start watching"
            await asyncio.sleep(0.05)
    finally:
        assert child.process is not None
        child.process.terminate()
        child.process.wait(10)
        child.close_log()
