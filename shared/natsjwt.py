"""NATS JWTs (the ``ed25519-nkey`` flavour nats-server reads): encode claims signed with an nkey, decode
and verify claims signed by one.

Only what the bus's authorization callout needs (``shared.buscallout``): the server's authorization
request, and the authorization response carrying a user's claims. The layout follows nats-io/jwt v2:
``base64url(header).base64url(claims).base64url(signature over the first two parts)``, the claims' ``jti``
being the base32 SHA-512/256 of the claims encoded with an empty ``jti``. No maintained Python package
writes these (the Go, JavaScript, Java and .NET clients have one each), and the format is a page long.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from typing import Any, Final

import nkeys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

HEADER: Final = {"typ": "JWT", "alg": "ed25519-nkey"}
NO_LIMIT: Final = -1


class InvalidJwt(ValueError):
    """A token that is malformed, not signed by its issuer, or not of the expected kind."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise InvalidJwt("a part is not base64url") from error


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def verify_key(public_key: str, prefix: int) -> Ed25519PublicKey:
    """The Ed25519 key inside a public nkey (``U…``, ``A…``, ``N…``), its checksum and kind checked."""
    try:
        raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
    except (binascii.Error, ValueError) as error:
        raise InvalidJwt("not an nkey") from error
    if len(raw) != 35 or bytes(nkeys.crc16_checksum(raw[:-2])) != raw[-2:]:
        raise InvalidJwt("not an nkey")
    if raw[0] != prefix:
        raise InvalidJwt("an nkey of another kind")
    return Ed25519PublicKey.from_public_bytes(raw[1:33])


def encode(claims: dict[str, Any], signer: nkeys.KeyPair, *, now: float | None = None) -> str:
    """Sign ``claims`` (``sub``, ``aud``, ``nats`` …) as ``signer``, which becomes ``iss``."""
    body = {**claims, "iat": int(now if now is not None else time.time()), "iss": signer.public_key.decode(), "jti": ""}
    body["jti"] = base64.b32encode(hashlib.new("sha512_256", _compact(body)).digest()).rstrip(b"=").decode()
    signing_input = f"{_b64encode(_compact(HEADER))}.{_b64encode(_compact(body))}"
    return f"{signing_input}.{_b64encode(bytes(signer.sign(signing_input.encode())))}"


def decode(token: str, *, issuer_prefix: int, now: float | None = None) -> dict[str, Any]:
    """The claims of ``token`` once its signature by ``iss`` (an nkey of ``issuer_prefix``) is checked,
    and its expiry if it has one."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise InvalidJwt("not three parts")
    try:
        header = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
    except json.JSONDecodeError as error:
        raise InvalidJwt("a part is not JSON") from error
    if not isinstance(header, dict) or header.get("alg") != HEADER["alg"] or str(header.get("typ")).upper() != "JWT":
        raise InvalidJwt("not an ed25519-nkey JWT")
    if not isinstance(claims, dict) or not isinstance(claims.get("iss"), str):
        raise InvalidJwt("no issuer")
    try:
        verify_key(claims["iss"], issuer_prefix).verify(_b64decode(parts[2]), f"{parts[0]}.{parts[1]}".encode())
    except InvalidSignature as error:
        raise InvalidJwt("the signature does not match the issuer") from error
    expires = claims.get("exp")
    if isinstance(expires, int) and expires and expires < (now if now is not None else time.time()):
        raise InvalidJwt("expired")
    return claims
