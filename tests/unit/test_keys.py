"""Signing keys and the JWKS as plain functions."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import jwt

from services.auth.keys import AccessClaims, KeyEncryptionKey, jwks, new_signing_key, sign_access_token

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=5)
KEK = KeyEncryptionKey(secrets.token_bytes(32), source="test")


def test_a_retired_key_stays_published_until_its_tokens_expire() -> None:
    old, new = new_signing_key(NOW - timedelta(days=31), KEK), new_signing_key(NOW, KEK)
    old.retired_at = NOW
    assert {k["kid"] for k in jwks([old, new], NOW + timedelta(minutes=4), TTL)["keys"]} == {old.kid, new.kid}
    assert {k["kid"] for k in jwks([old, new], NOW + timedelta(minutes=6), TTL)["keys"]} == {new.kid}


def test_the_jwks_carries_no_private_material() -> None:
    key = new_signing_key(NOW, KEK)
    published = jwks([key], NOW, TTL)["keys"][0]
    assert set(published) == {"kty", "crv", "x", "kid", "alg", "use"}


def test_a_signed_token_verifies_with_its_published_key() -> None:
    key = new_signing_key(NOW, KEK)
    claims = AccessClaims(user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), session_id=uuid.uuid4(), roles=["member"])
    now = datetime.now(UTC)
    token = sign_access_token(key, claims, issuer="iss", audience="aud", now=now, ttl=TTL)
    public = jwt.PyJWK(jwks([key], now, TTL)["keys"][0])
    decoded = jwt.decode(token, public.key, algorithms=["EdDSA"], audience="aud", issuer="iss")
    assert decoded["sid"] == str(claims.session_id) and decoded["roles"] == ["member"]
    assert decoded["exp"] - decoded["iat"] == 300
