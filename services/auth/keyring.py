"""The signing keys as the service uses them: the active key (created on first start, rotated
on schedule or on request) and the JWKS of every key that may have signed a live token."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from services.auth import repository as repo
from services.auth.keys import SigningKey, jwks, new_signing_key, utcnow
from shared.store import Store, Transaction

CACHE_SECONDS = 30.0


class KeyRing:
    def __init__(self, store: Store, *, rotation_age: timedelta, published_after_retire: timedelta) -> None:
        self.store = store
        self.rotation_age = rotation_age
        self.published_after_retire = published_after_retire
        self._keys: list[SigningKey] = []
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    def _ensure_active(self, tx: Transaction, force_rotation: bool) -> list[SigningKey]:
        now = utcnow()
        keys = repo.signing_keys(tx)
        active = [key for key in keys if key.retired_at is None]
        if active and not force_rotation and now - active[-1].created_at < self.rotation_age:
            return keys
        for key in active:
            key.retired_at = now
            repo.put_signing_key(tx, key)
        fresh = new_signing_key(now)
        repo.put_signing_key(tx, fresh)
        return [*keys, fresh]

    async def _reload(self, force_rotation: bool = False) -> None:
        self._keys = await self.store.run(lambda tx: self._ensure_active(tx, force_rotation))
        self._loaded_at = time.monotonic()

    async def active(self) -> SigningKey:
        async with self._lock:
            stale = time.monotonic() - self._loaded_at > CACHE_SECONDS
            if not self._keys or stale or utcnow() - self._keys[-1].created_at >= self.rotation_age:
                await self._reload()
        return next(key for key in reversed(self._keys) if key.retired_at is None)

    async def rotate(self) -> SigningKey:
        async with self._lock:
            await self._reload(force_rotation=True)
        return self._keys[-1]

    async def jwks(self) -> dict[str, list[dict[str, Any]]]:
        async with self._lock:
            await self._reload()
        return jwks(self._keys, utcnow(), self.published_after_retire)
