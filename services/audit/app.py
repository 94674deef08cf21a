"""Composition of the audit service: its collaborators, wired onto the shared service runtime."""

from __future__ import annotations

import asyncio

from services.audit import checkpoints, retention
from services.audit.appender import Appender
from services.audit.context import AuditContext
from services.audit.handlers import register_handlers
from services.audit.settings import AuditSettings
from services.audit.signer import Signer
from shared.sealed_keys import KeyEncryptionKey, load_kek
from shared.service import Register, ServiceContext

SERVICE = "audit"


def key_encryption_key(settings: AuditSettings) -> KeyEncryptionKey:
    return load_kek(
        settings.audit_key_encryption_key_file,
        generated=settings.data_dir / "secrets" / "audit-kek",
        setting="CODITECT_AUDIT_KEY_ENCRYPTION_KEY_FILE",
        on_fdb=settings.fdb_cluster_file is not None,
    )


def build(settings: AuditSettings) -> Register:
    """The registration function the service runtime calls with its context."""

    def register(ctx: ServiceContext) -> None:
        kek = key_encryption_key(settings)  # first: a bad KEK fails the start before anything is built
        audit = AuditContext(store=ctx.store, settings=settings, signer=Signer(ctx.store, kek))
        appender = Appender(audit)
        register_handlers(ctx.dispatcher, audit, concurrency=settings.handler_concurrency)
        ctx.components["audit"] = audit
        ctx.components["appender"] = appender

        async def with_bus(stop: asyncio.Event) -> None:
            # Background jobs start once the broker is connected and the streams exist.
            audit.js = ctx.broker.config.connection_state.stream
            audit.nc = ctx.broker.config.connection_state.connection
            await audit.signer.open_at_start(stop)
            await asyncio.gather(appender.run(stop), checkpoints.run(audit, stop), retention.run(audit, stop))

        ctx.background.append(with_bus)

    return register
