"""The audit service's own Ed25519 key: created sealed on first start, never rotated away (every
checkpoint it ever signed must stay verifiable, so every key stays published)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from services.audit import repository as repo
from services.audit.chain import sign_checkpoint
from shared.sealed_keys import KeyEncryptionError, KeyEncryptionKey, SigningKey, new_signing_key, open_signing_key
from shared.store import Store, Transaction

log = logging.getLogger(__name__)


class Signer:
    def __init__(self, store: Store, kek: KeyEncryptionKey) -> None:
        self.store = store
        self.kek = kek
        self._keys: list[SigningKey] = []
        self._lock = asyncio.Lock()

    def _load(self, tx: Transaction) -> list[SigningKey]:
        keys = repo.signing_keys(tx)
        for key in keys:
            if open_signing_key(key, self.kek):
                repo.put_signing_key(tx, key)
        if not keys:
            fresh = new_signing_key(datetime.now(UTC), self.kek)
            repo.put_signing_key(tx, fresh)
            keys = [fresh]
        return sorted(keys, key=lambda key: key.created_at)

    async def keys(self) -> list[SigningKey]:
        if not self._keys:
            async with self._lock:
                if not self._keys:
                    self._keys = await self.store.run(self._load)
        return self._keys

    async def jwks(self) -> dict[str, list[dict[str, Any]]]:
        return {"keys": [key.public_jwk for key in await self.keys()]}

    def sign(self, chain: str, seq: int, hash_: str, at: datetime) -> dict[str, Any]:
        """Sign with the newest key (``keys`` must have been awaited once)."""
        key = self._keys[-1]
        return sign_checkpoint(key.private_key, key.kid, chain, seq, hash_, at)

    async def open_at_start(self, stop: asyncio.Event) -> None:
        """Open (or create) the key as soon as the store answers; a wrong KEK stops the service."""
        delay = 0.5
        while not stop.is_set():
            try:
                await self.keys()
                return
            except KeyEncryptionError as error:
                log.critical(
                    "audit cannot open its checkpoint signing key, stopping: %s. Mount the key-encryption key it was "
                    "sealed with (CODITECT_AUDIT_KEY_ENCRYPTION_KEY_FILE).",
                    error,
                )
                stop.set()
                return
            except Exception as error:
                log.warning("audit could not load its signing key yet (%s); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)
