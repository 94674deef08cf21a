"""Device tokens (OWASP's "device cookies"): proof that this client logged in to an account before.

A successful login hands one out; the next login to the same account that sends it back is held
only by the account's own lockout, not by the per-address throttle, so a crowd guessing passwords
from an office's shared address cannot lock that office's people out.

A token is ``dt1.<kid>.<user id>.<expiry>.<mac>``: an HMAC-SHA256 over the rest, under a random key
the auth service keeps in its store sealed with the key-encryption key (like the signing keys), so
nothing in the store alone can mint one. Nothing per token is stored: it is bound to the account by
the user id it names and ends at its expiry. A token that is malformed, forged, expired, or for
another account is simply not honoured: the login proceeds as any other would, and its answer does
not say why.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
import uuid
from datetime import datetime, timedelta

from services.auth import repository as repo
from services.auth.keys import KeyEncryptionKey, utcnow
from shared.store import Store, Transaction

VERSION = "dt1"
KEY_BYTES = 32
MAX_TOKEN_CHARS = 256
# An unknown kid reloads the keys at most this often: forged kids must not turn into store reads.
RELOAD_MIN_SECONDS = 30.0


def _label(kid: str) -> str:
    # Sealed under its own label: a sealed signing key copied onto this record does not open.
    return f"device-token-key:{kid}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _mac(key: bytes, signed: str) -> bytes:
    return hmac.new(key, signed.encode(), hashlib.sha256).digest()


def sign(kid: str, key: bytes, user_id: uuid.UUID, expires: int) -> str:
    signed = f"{VERSION}.{kid}.{user_id.hex}.{expires}"
    return f"{signed}.{_b64(_mac(key, signed))}"


def holder(token: str, keys: dict[str, bytes], now: float) -> uuid.UUID | None:
    """The account a genuine, unexpired token was issued for; None for anything else."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != VERSION:
        return None
    _, kid, user_hex, expires_text, mac_text = parts
    key = keys.get(kid)
    if key is None or not expires_text.isascii() or not expires_text.isdigit():
        return None
    try:
        presented = base64.urlsafe_b64decode(mac_text + "=" * (-len(mac_text) % 4))
        user_id = uuid.UUID(hex=user_hex)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(_mac(key, ".".join(parts[:4])), presented):
        return None
    if int(expires_text) <= now:
        return None
    return user_id


class DeviceTokens:
    """Issues and checks device tokens; the key is created on first use and cached."""

    def __init__(self, store: Store, kek: KeyEncryptionKey, ttl: timedelta) -> None:
        self.store = store
        self.kek = kek
        self.ttl = ttl
        self._keys: dict[str, bytes] = {}
        self._signing: tuple[str, bytes] | None = None
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    def _load_or_create(self, tx: Transaction) -> list[tuple[str, bytes]]:
        records = repo.device_keys(tx)
        if not records:
            # Two replicas racing here both read the empty range: the store lets one commit.
            kid = secrets.token_hex(8)
            raw = secrets.token_bytes(KEY_BYTES)
            record = repo.DeviceKeyRecord(
                kid=kid, kek_id=self.kek.id, sealed=self.kek.seal_bytes(_label(kid), raw), created_at=utcnow()
            )
            repo.put_device_key(tx, record)
            return [(kid, raw)]
        return [(r.kid, self.kek.open_bytes(_label(r.kid), r.sealed, r.kek_id)) for r in records]

    async def _reload(self) -> None:
        keys = await self.store.run(self._load_or_create)
        self._keys = dict(keys)
        self._signing = keys[0]  # the oldest signs, so every replica signs with the same key
        self._loaded_at = time.monotonic()

    async def issue(self, user_id: uuid.UUID, now: datetime) -> str:
        if self._signing is None:
            async with self._lock:
                if self._signing is None:
                    await self._reload()
        assert self._signing is not None
        kid, key = self._signing
        return sign(kid, key, user_id, int((now + self.ttl).timestamp()))

    async def holder(self, token: str | None) -> uuid.UUID | None:
        """The account ``token`` proves an earlier login of, or None (absent, malformed, forged, expired)."""
        if not token:
            return None
        kid = token.split(".", 2)[1] if token.count(".") >= 2 else ""
        if kid not in self._keys and time.monotonic() - self._loaded_at > RELOAD_MIN_SECONDS:
            async with self._lock:
                if kid not in self._keys and time.monotonic() - self._loaded_at > RELOAD_MIN_SECONDS:
                    await self._reload()
        return holder(token, self._keys, time.time())
