"""Several replicas: each works on a workspace only under a claim taken in a store transaction, so
replicas racing for the same workspace provision it once (two store handles on one database file,
as two processes would have; the backend is a counting stand-in, the store and claims are real)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import uuid4

from faststream.nats import NatsBroker

from services.provisioning import repository as repo
from services.provisioning import states
from services.provisioning.backends import WorkspaceRef
from services.provisioning.context import ProvisioningContext, utcnow
from services.provisioning.settings import ProvisioningSettings
from services.provisioning.workspaces import drive
from shared.outbox import Outbox
from shared.store import open_store


class CountingBackend:
    name = "local"

    def __init__(self) -> None:
        self.provisioned: list[WorkspaceRef] = []

    async def provision(self, ref: WorkspaceRef) -> dict[str, str]:
        self.provisioned.append(ref)
        await asyncio.sleep(0.2)  # long enough for every racer to try its claim meanwhile
        return {"path": "/nowhere"}

    async def deprovision(self, ref: WorkspaceRef) -> None:
        raise AssertionError("not expected")

    async def attach(self, refs: list[WorkspaceRef]) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...

    def close(self) -> None: ...


async def test_racing_replicas_provision_a_workspace_once(tmp_path: Path) -> None:
    settings = ProvisioningSettings(data_dir=tmp_path, nats_url="nats://127.0.0.1:1")
    backend = CountingBackend()
    replicas = []
    for _ in range(4):
        store = open_store(settings, "provisioning")
        outbox = Outbox(store, repo.OUTBOX, NatsBroker("nats://127.0.0.1:1"), dead_letters=repo.OUTBOX_DEAD_LETTER)
        replicas.append(ProvisioningContext(store=store, outbox=outbox, settings=settings, backend=backend))  # type: ignore[arg-type]
    tenant, user = uuid4(), uuid4()
    record = states.new(tenant, user, "local", utcnow())
    await replicas[0].store.run(lambda tx: repo.save(tx, None, record))
    try:
        await asyncio.gather(*(drive(ctx, tenant, user) for ctx in replicas))
        final = await replicas[0].store.run(lambda tx: repo.get(tx, tenant, user))
    finally:
        for ctx in replicas:
            ctx.store.close()
    assert len(backend.provisioned) == 1
    assert final is not None and final.status == "ready" and final.attempts == 1
