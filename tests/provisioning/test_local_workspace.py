"""Register → a workspace on the local backend → its monitor publishes the files' changes."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from uuid import UUID, uuid4

import nats as nats_client

from contracts import provisioning as api
from contracts import subjects
from contracts.file_event import FileChange
from contracts.identity import Caller
from shared import bus
from shared.buspolicy import GATEWAY
from shared.callerproof import HEADER, CallerSigner
from tests.provisioning.helpers import wait_file_events, wait_status, workspace_of
from tests.session.helpers import call, new_user
from tests.support import Gateway, NatsServer


async def test_a_new_user_gets_a_ready_workspace_whose_changes_reach_the_stream(
    system: Gateway, nats: NatsServer
) -> None:
    user = await new_user(system)
    workspace = await wait_status(system, user, "ready")
    assert workspace["backend"] == "local" and workspace["error"] is None
    assert workspace["id"] == str(api.workspace_id(UUID(user.tenant_id), UUID(user.id)))
    root = Path(workspace["details"]["path"])
    assert root.is_dir() and root.parts[-2:] == (user.tenant_id, user.id)  # noqa: ASYNC240
    subject = subjects.file_subject(user.tenant_id, user.id, workspace["id"])

    (root / "src").mkdir()
    (root / "src" / "main.py").write_text("print('hi')\n")
    await wait_file_events(nats.url, subject, lambda evs: any(e["path"] == "src/main.py" for e in evs))
    for folder in (".git", "node_modules/lib", "target", "dist", "src/__pycache__"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "ignored.txt").write_text("x")
    with (root / "src" / "main.py").open("a") as handle:  # an editor's save storm: many writes, one event
        for _ in range(20):
            handle.write("# more\n")
            handle.flush()
            os.fsync(handle.fileno())
    await asyncio.sleep(0.3)
    (root / "src" / "main.py").rename(root / "src" / "app.py")
    await asyncio.sleep(0.3)
    (root / "src" / "app.py").unlink()

    events = await wait_file_events(nats.url, subject, lambda evs: any(e["kind"] == "deleted" for e in evs))
    changes = [(e["kind"], e["path"], e.get("old_path")) for e in events]
    assert changes == [
        ("created", "src", None),
        ("created", "src/main.py", None),
        ("modified", "src/main.py", None),
        ("moved", "src/app.py", "src/main.py"),
        ("deleted", "src/app.py", None),
    ], changes
    created, modified = FileChange.model_validate(events[1]), FileChange.model_validate(events[2])
    assert created.size == len("print('hi')\n") and created.sha256 is not None and created.actor == "user"
    assert modified.size == len("print('hi')\n") + 20 * len("# more\n")
    assert events[0]["is_dir"] is True
    assert all(
        not any(part in e["path"] for part in ("git", "node_modules", "target", "dist", "pycache")) for e in events
    )


async def test_workspace_is_404_before_it_is_requested_and_reprovision_is_202(system: Gateway) -> None:
    stranger = Caller(tenant_id=uuid4(), user_id=uuid4(), session_id=uuid4())
    # Straight on the bus as the test's all-rights user, the caller vouched for with the gateway's key.
    assert system.nats is not None
    vouched = {HEADER: CallerSigner.from_file(system.nats.caller_key_file(GATEWAY)).assertion(stranger)}
    nc = await nats_client.connect(system.nats.url)
    try:
        reply = await bus.request(nc, api.GET, api.GetWorkspace(caller=stranger), timeout=5, headers=vouched)
        again = await bus.request(
            nc, api.REPROVISION, api.ReprovisionWorkspace(caller=stranger), timeout=5, headers=vouched
        )
    finally:
        await nc.close()
    assert reply.error is not None and reply.error.code == "NOT_FOUND"
    assert again.error is not None and again.error.code == "NOT_FOUND"

    user = await new_user(system)
    await wait_status(system, user, "ready")
    status, body, _ = await call(system, "POST", "/workspaces/me/reprovision", user)
    assert status == 202, body
    assert body["data"]["status"] in ("requested", "provisioning", "ready")
    ready = await wait_status(system, user, "ready")
    assert ready["attempts"] == 1
    assert (await call(system, "GET", "/workspaces/me"))[0] == 401
    shutil.rmtree(Path(ready["details"]["path"]))  # a reprovision brings a lost directory back
    assert (await call(system, "POST", "/workspaces/me/reprovision", user))[0] == 202
    again = await wait_status(system, user, "ready")
    await asyncio.sleep(0.1)
    assert Path(again["details"]["path"]).is_dir()  # noqa: ASYNC240
    assert (await workspace_of(system, user))[0] == 200
