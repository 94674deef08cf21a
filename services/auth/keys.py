"""Signing keys (Ed25519, EdDSA) and access tokens.

The active key signs; a rotated-out key stays in the JWKS until every token it signed has
expired. Sealing keys at rest under the key-encryption key is ``shared.sealed_keys`` (the audit
service seals its checkpoint key the same way).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from pydantic import BaseModel

from shared.sealed_keys import ALGORITHM as ALGORITHM
from shared.sealed_keys import KEK_BYTES as KEK_BYTES
from shared.sealed_keys import KeyEncryptionError as KeyEncryptionError
from shared.sealed_keys import KeyEncryptionKey as KeyEncryptionKey
from shared.sealed_keys import SigningKey as SigningKey
from shared.sealed_keys import new_signing_key as new_signing_key
from shared.sealed_keys import open_signing_key as open_signing_key
from shared.sealed_keys import public_jwk as public_jwk
from shared.sealed_keys import read_or_create_kek_file as read_or_create_kek_file


def signing_key(keys: list[SigningKey], now: datetime) -> SigningKey:
    """The oldest key not yet retired: during a hand-over the outgoing key signs until its retired_at."""
    return next(key for key in keys if key.retired_at is None or key.retired_at > now)


def jwks(keys: list[SigningKey], now: datetime, access_ttl: timedelta) -> dict[str, list[dict[str, Any]]]:
    live = [key for key in keys if (until := key.published_until(access_ttl)) is None or until > now]
    return {"keys": [key.public_jwk for key in live]}


class AccessClaims(BaseModel):
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    roles: list[str]


def sign_access_token(
    key: SigningKey, claims: AccessClaims, *, issuer: str, audience: str, now: datetime, ttl: timedelta
) -> str:
    payload = {
        "iss": issuer,
        "aud": audience,
        "sub": str(claims.user_id),
        "tid": str(claims.tenant_id),
        "sid": str(claims.session_id),
        "roles": claims.roles,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})


def utcnow() -> datetime:
    return datetime.now(UTC)
