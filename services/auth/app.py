"""Composition of the auth service: its collaborators, wired onto the shared service runtime."""

from __future__ import annotations

from datetime import timedelta

from services.auth import repository as repo
from services.auth.attempts import forget_stale_addresses
from services.auth.context import AuthContext
from services.auth.device_tokens import DeviceTokens
from services.auth.handlers import published_after_retire, register_handlers
from services.auth.keyring import KeyRing
from services.auth.passwords import PasswordHashing
from services.auth.settings import AuthSettings
from shared.outbox import Outbox
from shared.sealed_keys import KeyEncryptionKey, load_kek
from shared.service import Register, ServiceContext

SERVICE = "auth"


def key_encryption_key(settings: AuthSettings) -> KeyEncryptionKey:
    """The KEK from its mounted file; on the embedded store, generated locally when none is configured."""
    return load_kek(
        settings.signing_key_encryption_key_file,
        generated=settings.data_dir / "secrets" / "auth-kek",
        setting="CODITECT_SIGNING_KEY_ENCRYPTION_KEY_FILE",
        on_fdb=settings.fdb_cluster_file is not None,
    )


def build(settings: AuthSettings) -> Register:
    """The registration function the service runtime calls with its context."""

    async def register(ctx: ServiceContext) -> None:
        # First, so that a missing or malformed KEK fails the start before anything else is built.
        kek = key_encryption_key(settings)
        hashing = PasswordHashing(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
            workers=settings.hash_workers,
            queue_limit=settings.hash_queue_limit,
            login_reserve=settings.hash_login_reserve,
        )
        keyring = KeyRing(
            ctx.store,
            kek=kek,
            rotation_age=timedelta(days=settings.signing_key_rotation_days),
            published_after_retire=published_after_retire(
                settings.access_token_ttl_seconds, settings.jwt_leeway_seconds
            ),
            rotation_min_interval=timedelta(seconds=settings.signing_key_rotation_min_interval_seconds),
        )
        outbox = Outbox(ctx.store, repo.OUTBOX, ctx.broker, dead_letters=repo.OUTBOX_DEAD_LETTER)
        device_tokens = DeviceTokens(ctx.store, kek, timedelta(days=settings.device_token_ttl_days))
        auth = AuthContext(
            store=ctx.store,
            outbox=outbox,
            hashing=hashing,
            keyring=keyring,
            settings=settings,
            device_tokens=device_tokens,
        )
        register_handlers(ctx.dispatcher, auth, concurrency=settings.handler_concurrency)
        ctx.components["auth"] = auth
        ctx.background.append(lambda stop: outbox.run(stop))
        ctx.background.append(lambda stop: forget_stale_addresses(auth, stop))
        ctx.background.append(keyring.open_at_start)
        ctx.on_close.append(hashing.close)

    return register
