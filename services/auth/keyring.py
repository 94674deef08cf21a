"""The signing keys as the service uses them: the active key (created on first start, rotated
on schedule or on request), the JWKS of every key that may have signed a live token, and the
pruning of keys that have left it."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from services.auth import repository as repo
from services.auth.keys import (
    KeyEncryptionError,
    KeyEncryptionKey,
    SigningKey,
    jwks,
    new_signing_key,
    open_signing_key,
    signing_key,
    utcnow,
)
from shared.store import Store, Transaction

log = logging.getLogger(__name__)

CACHE_SECONDS = 30.0
# A new key is published this long before it signs. Every replica serves the JWKS from a cache at
# most CACHE_SECONDS old, so by the time a gateway meets the new kid every replica lists it; the
# second CACHE_SECONDS absorbs clock skew between replicas.
HANDOVER = timedelta(seconds=2 * CACHE_SECONDS)


class RotationTooSoon(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the newest signing key is too recent to rotate; retry in {retry_after:.0f}s")
        self.retry_after = retry_after


class KeyRing:
    def __init__(
        self,
        store: Store,
        *,
        kek: KeyEncryptionKey,
        rotation_age: timedelta,
        published_after_retire: timedelta,
        rotation_min_interval: timedelta,
    ) -> None:
        self.store = store
        self.kek = kek
        self.rotation_age = rotation_age
        self.published_after_retire = published_after_retire
        self.rotation_min_interval = rotation_min_interval
        self._keys: list[SigningKey] = []
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    def _live_keys(self, tx: Transaction, now: datetime) -> list[SigningKey]:
        """The stored keys, each opened with the KEK; those past their publication are deleted."""
        keys, sealed = [], 0
        for key in repo.signing_keys(tx):
            until = key.published_until(self.published_after_retire)
            if until is not None and until <= now:
                repo.delete_signing_key(tx, key)
                continue
            if open_signing_key(key, self.kek):
                repo.put_signing_key(tx, key)
                sealed += 1
            keys.append(key)
        if sealed:
            log.warning(
                "sealed %d signing key(s) an older version stored in plaintext; rotate the signing key "
                "(rpc.auth.rotate_signing_key) so that no key ever readable in the store signs again",
                sealed,
            )
        return keys

    def _ensure_active(self, tx: Transaction, force_rotation: bool) -> list[SigningKey]:
        now = utcnow()
        keys = self._live_keys(tx, now)
        if force_rotation and keys:
            wait = keys[-1].created_at + self.rotation_min_interval - now
            if wait > timedelta(0):
                raise RotationTooSoon(wait.total_seconds())
        current = [key for key in keys if key.retired_at is None]
        if current and not force_rotation and now - current[-1].created_at < self.rotation_age:
            return keys
        for key in current:
            key.retired_at = now + HANDOVER
            repo.put_signing_key(tx, key)
        fresh = new_signing_key(now, self.kek)
        repo.put_signing_key(tx, fresh)
        return [*keys, fresh]

    async def _reload(self, force_rotation: bool = False) -> None:
        self._keys = await self.store.run(lambda tx: self._ensure_active(tx, force_rotation))
        self._loaded_at = time.monotonic()

    def _stale(self) -> bool:
        return not self._keys or time.monotonic() - self._loaded_at > CACHE_SECONDS

    async def active(self) -> SigningKey:
        async with self._lock:
            if self._stale() or utcnow() - self._keys[-1].created_at >= self.rotation_age:
                await self._reload()
        return signing_key(self._keys, utcnow())

    async def rotate(self) -> SigningKey:
        """A new key, published now and signing after the hand-over; refused (RotationTooSoon)
        within the minimum interval of the newest key."""
        async with self._lock:
            await self._reload(force_rotation=True)
        return self._keys[-1]

    async def jwks(self) -> dict[str, list[dict[str, Any]]]:
        # From the cache without the lock: a flood of JWKS requests must not queue behind signing.
        if self._stale():
            async with self._lock:
                if self._stale():
                    await self._reload()
        return jwks(self._keys, utcnow(), self.published_after_retire)

    async def open_at_start(self, stop: asyncio.Event) -> None:
        """Open the stored keys as soon as the store answers: a wrong KEK stops the service at
        start-up with one clear line, instead of failing its first logins or signing with a new key."""
        delay = 0.5
        while not stop.is_set():
            try:
                await self.active()
                return
            except KeyEncryptionError as error:
                log.critical(
                    "auth cannot open its signing keys, stopping: %s. Mount the key-encryption key these keys were "
                    "sealed with (CODITECT_SIGNING_KEY_ENCRYPTION_KEY_FILE); deleting the keys instead would "
                    "invalidate every access token.",
                    error,
                )
                stop.set()
                return
            except Exception as error:
                log.warning("auth could not load its signing keys yet (%s); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)
