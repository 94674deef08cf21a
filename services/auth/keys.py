"""Signing keys (Ed25519, EdDSA) and access tokens.

The active key signs; a rotated-out key stays in the JWKS until every token it signed has
expired. Private keys live only in the auth service's store prefix.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from pydantic import BaseModel, Field

ALGORITHM = "EdDSA"


class SigningKey(BaseModel):
    kid: str
    private_pem: str = Field(repr=False)
    public_jwk: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None = None

    def published_until(self, access_ttl: timedelta) -> datetime | None:
        """When the key may leave the JWKS: None while it still signs."""
        return None if self.retired_at is None else self.retired_at + access_ttl


def new_signing_key(now: datetime) -> SigningKey:
    private = Ed25519PrivateKey.generate()
    kid = f"{now:%Y%m%d}-{secrets.token_hex(4)}"
    jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return SigningKey(kid=kid, private_pem=pem, public_jwk=jwk, created_at=now)


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
    return jwt.encode(payload, _private_key(key), algorithm=ALGORITHM, headers={"kid": key.kid})


_loaded: dict[str, Ed25519PrivateKey] = {}


def _private_key(key: SigningKey) -> Ed25519PrivateKey:
    private = _loaded.get(key.kid)
    if private is None:
        loaded = serialization.load_pem_private_key(key.private_pem.encode(), password=None)
        assert isinstance(loaded, Ed25519PrivateKey)
        private = _loaded[key.kid] = loaded
    return private


def utcnow() -> datetime:
    return datetime.now(UTC)
