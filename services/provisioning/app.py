"""Composition of the provisioning service: its collaborators, wired onto the shared service runtime."""

from __future__ import annotations

import asyncio

from services.provisioning import reconcile
from services.provisioning import repository as repo
from services.provisioning.backends import make_backend
from services.provisioning.context import ProvisioningContext
from services.provisioning.handlers import register_consumers, register_handlers
from services.provisioning.settings import ProvisioningSettings
from shared.outbox import Outbox
from shared.service import Register, ServiceContext

SERVICE = "provisioning"


def build(settings: ProvisioningSettings) -> Register:
    """The registration function the service runtime calls with its context."""

    def register(ctx: ServiceContext) -> None:
        outbox = Outbox(ctx.store, repo.OUTBOX, ctx.broker, dead_letters=repo.OUTBOX_DEAD_LETTER)
        backend = make_backend(settings)
        provisioning = ProvisioningContext(store=ctx.store, outbox=outbox, settings=settings, backend=backend)
        register_handlers(ctx.dispatcher, provisioning)
        register_consumers(ctx.broker, provisioning)
        ctx.components["provisioning"] = provisioning

        async def work(stop: asyncio.Event) -> None:
            try:
                await reconcile.run(provisioning, stop)
            finally:
                await provisioning.cancel_all()

        ctx.background.append(outbox.run)
        ctx.background.append(backend.run)
        ctx.background.append(work)
        ctx.on_close.append(backend.close)

    return register
