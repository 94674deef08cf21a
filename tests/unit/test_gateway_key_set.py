"""The gateway's key set: refreshed on a schedule, keys that left the JWKS stop being trusted at
once (cached verifications included), and one bad reply never replaces the set."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from contracts.envelope import Reply
from services.gateway.http import ApiError
from services.gateway.tokens import JwksVerifier

ISSUER, AUDIENCE = "coditect-auth", "coditect-api"


class JwksReplies:
    """Stands in for the bus link: answers the JWKS request with whatever the test set last."""

    def __init__(self, jwks: Any) -> None:
        self.jwks = jwks
        self.requests = 0

    async def request(self, subject: str, payload: Any, *, timeout: float | None = None) -> Reply:
        self.requests += 1
        return Reply.success(self.jwks)


def _key(kid: str) -> tuple[Ed25519PrivateKey, dict[str, Any]]:
    private = Ed25519PrivateKey.generate()
    jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": "EdDSA", "use": "sig"})
    return private, jwk


def _token(private: Ed25519PrivateKey, kid: str, lifetime: int = 300) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(uuid.uuid4()),
        "tid": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "roles": ["member"],
        "iat": now,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": kid})


def _verifier(bus: JwksReplies) -> JwksVerifier:
    verifier = JwksVerifier(
        bus,  # type: ignore[arg-type]
        issuer=ISSUER,
        audience=AUDIENCE,
        leeway=30,
        access_ttl=300,
        refresh_min_interval=0.0,
        revocation_stale_after=float("inf"),
    )
    verifier.revocations._confirmed_at = time.monotonic()  # no bus here: revocations count as current
    return verifier


async def test_a_key_that_left_the_jwks_is_no_longer_trusted_even_for_cached_tokens() -> None:
    old_private, old_jwk = _key("old")
    _, new_jwk = _key("new")
    bus = JwksReplies({"keys": [old_jwk, new_jwk]})
    verifier = _verifier(bus)
    token = _token(old_private, "old")
    await verifier.verify(token)
    await verifier.verify(token)  # now served from the verified-token cache
    bus.jwks = {"keys": [new_jwk]}
    await verifier._refresh_keys(force=True)
    with pytest.raises(ApiError) as refused:
        await verifier.verify(token)
    assert refused.value.status == 401


@pytest.mark.parametrize(
    "garbled",
    [{"keys": []}, {"keys": "nope"}, {}, [], {"keys": [{"kid": "x", "kty": "OKP", "alg": "HS256", "k": "c2VjcmV0"}]}],
)
async def test_a_reply_without_usable_keys_does_not_replace_the_set(garbled: Any) -> None:
    private, jwk = _key("live")
    bus = JwksReplies({"keys": [jwk]})
    verifier = _verifier(bus)
    token = _token(private, "live")
    await verifier.verify(token)
    bus.jwks = garbled
    await verifier._refresh_keys(force=True)
    verifier._verified.clear()
    assert (await verifier.verify(token)).roles == ["member"]


async def test_a_private_key_in_the_jwks_is_never_used() -> None:
    private, jwk = _key("leaky")
    jwk["d"] = "c2VjcmV0"
    verifier = _verifier(JwksReplies({"keys": [jwk]}))
    with pytest.raises(ApiError):
        await verifier.verify(_token(private, "leaky"))


async def test_a_token_valid_for_longer_than_the_access_ttl_is_refused() -> None:
    private, jwk = _key("k")
    verifier = _verifier(JwksReplies({"keys": [jwk]}))
    assert await verifier.verify(_token(private, "k", lifetime=330))
    with pytest.raises(ApiError):
        await verifier.verify(_token(private, "k", lifetime=331))


async def test_a_reply_sharing_no_known_key_adds_its_keys_but_retires_none() -> None:
    live_private, live_jwk = _key("live")
    _, stranger_jwk = _key("stranger")
    bus = JwksReplies({"keys": [live_jwk]})
    verifier = _verifier(bus)
    token = _token(live_private, "live")
    await verifier.verify(token)
    bus.jwks = {"keys": [stranger_jwk]}  # a responder that is not the auth service, or a confused one
    await verifier._refresh_keys(force=True)
    verifier._verified.clear()
    assert (await verifier.verify(token)).roles == ["member"]
    assert set(verifier._keys) == {"live", "stranger"}


async def test_the_key_set_stays_bounded() -> None:
    keys = [_key(f"k{i}")[1] for i in range(40)]
    bus = JwksReplies({"keys": keys})
    verifier = _verifier(bus)
    await verifier._refresh_keys(force=True)
    assert len(verifier._keys) <= 16
