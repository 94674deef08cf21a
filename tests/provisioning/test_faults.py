"""Faults: a killed monitor is restarted; changes made while the bus is down all arrive after it returns."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from uuid import UUID

from contracts import subjects
from services.provisioning.backends.monitors import pid_file
from tests.provisioning.helpers import wait_file_events, wait_status
from tests.session.helpers import new_user
from tests.support import Gateway, NatsServer, kill_nats, wait_ready


async def test_a_monitor_killed_with_sigkill_is_restarted_and_keeps_reporting(
    system: Gateway, nats: NatsServer
) -> None:
    user = await new_user(system)
    workspace = await wait_status(system, user, "ready")
    backend = system.services["provisioning"].ctx.components["provisioning"].backend
    state_dir = backend.state_dir_of(UUID(workspace["id"]))
    first = int(pid_file(state_dir).read_text())
    os.kill(first, signal.SIGKILL)
    child = backend.monitors.children[UUID(workspace["id"])]
    deadline = asyncio.get_running_loop().time() + 10
    while not (child.watching() and child.process is not None and child.process.pid != first):
        assert asyncio.get_running_loop().time() < deadline, "the monitor was not restarted"
        await asyncio.sleep(0.05)
    assert child.restarts == 1
    root = Path(workspace["details"]["path"])
    (root / "after-restart.txt").write_text("still watched")
    subject = subjects.file_subject(user.tenant_id, user.id, workspace["id"])
    await wait_file_events(nats.url, subject, lambda evs: [e["path"] for e in evs] == ["after-restart.txt"])


async def test_changes_made_while_the_bus_is_down_arrive_once_it_is_back(system: Gateway, nats: NatsServer) -> None:
    user = await new_user(system)
    workspace = await wait_status(system, user, "ready")
    root = Path(workspace["details"]["path"])
    subject = subjects.file_subject(user.tenant_id, user.id, workspace["id"])
    (root / "before.txt").write_text("0")
    await wait_file_events(nats.url, subject, lambda evs: len(evs) == 1)

    kill_nats(nats)
    names = [f"during-{i}.txt" for i in range(50)]
    for name in names:
        (root / name).write_text(name)
    await asyncio.sleep(0.5)
    (root / "during-0.txt").rename(root / "moved-while-down.txt")
    (root / "during-1.txt").unlink()
    await asyncio.sleep(2.0)  # the monitor has buffered them on disk by now, with no bus to send to
    # ...and what is on disk survives the monitor itself: SIGKILL it while the bus is still away.
    backend = system.services["provisioning"].ctx.components["provisioning"].backend
    child = backend.monitors.children[UUID(workspace["id"])]
    killed = child.process.pid
    os.kill(killed, signal.SIGKILL)
    deadline = asyncio.get_running_loop().time() + 10
    while not (child.watching() and child.process.pid != killed):
        assert asyncio.get_running_loop().time() < deadline, "the monitor was not restarted"
        await asyncio.sleep(0.05)
    nats.start_again()

    def complete(events: list[dict[str, object]]) -> bool:
        return any(e["kind"] == "deleted" for e in events) and any(e["kind"] == "moved" for e in events)

    # Usually about 6 s from here; a slow path of about 20 s more was seen once in ten runs and failed
    # CI once at 20 s (not yet explained: README, "Status"). What is pinned is that nothing is lost.
    events = await wait_file_events(nats.url, subject, complete, timeout=45)
    by_path = {(e["kind"], e["path"]) for e in events}
    assert {("created", name) for name in names} <= by_path
    assert ("moved", "moved-while-down.txt") in by_path and ("deleted", "during-1.txt") in by_path
    assert len(events) == 1 + 50 + 2, "each change once (Nats-Msg-Id deduplicates resends)"
    await wait_ready(system, timeout=30)  # every connection is back before the teardown drains them
