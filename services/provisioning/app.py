"""Composition of the provisioning service: its collaborators, wired onto the shared service runtime."""

from __future__ import annotations

import asyncio

from services.provisioning import reconcile
from services.provisioning import repository as repo
from services.provisioning.backends import make_backend
from services.provisioning.context import ProvisioningContext
from services.provisioning.handlers import ensure_auth_consumer, register_consumers, register_handlers
from services.provisioning.monitor_keys import MonitorKeys, callout_responder
from services.provisioning.settings import ProvisioningSettings
from shared.outbox import Outbox
from shared.service import Register, ServiceContext

SERVICE = "provisioning"


def build(settings: ProvisioningSettings) -> Register:
    """The registration function the service runtime calls with its context."""

    def register(ctx: ServiceContext) -> None:
        outbox = Outbox(ctx.store, repo.OUTBOX, ctx.broker, dead_letters=repo.OUTBOX_DEAD_LETTER)
        keys = MonitorKeys(ctx.store)
        backend = make_backend(settings, keys if settings.monitor_issuer_seed_file is not None else None)
        provisioning = ProvisioningContext(store=ctx.store, outbox=outbox, settings=settings, backend=backend)
        register_handlers(ctx.dispatcher, provisioning)
        register_consumers(ctx.broker, provisioning)
        ctx.before_subscribing.append(ensure_auth_consumer)
        ctx.components["provisioning"] = provisioning
        ctx.components["monitor_keys"] = keys

        async def work(stop: asyncio.Event) -> None:
            try:
                await reconcile.run(provisioning, stop)
            finally:
                await provisioning.cancel_all()

        responder = callout_responder(settings, keys)
        if responder is not None:

            async def admit_monitors(stop: asyncio.Event) -> None:
                await responder.serve(ctx.broker.config.connection_state.connection, stop, queue=SERVICE)

            ctx.background.append(admit_monitors)
        ctx.background.append(outbox.run)
        ctx.background.append(backend.run)
        ctx.background.append(work)
        ctx.on_close.append(backend.close)

    return register
