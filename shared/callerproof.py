"""Caller assertions: the gateway vouches for the caller it verified, services believe no other.

Bus permissions already keep every identity but the gateway off the services' request subjects;
this is the second line: a request's ``caller`` counts only with an assertion the gateway signed
(Ed25519, its own key, not its NATS key) over exactly that caller, for a short time. So an identity
whose permissions are too wide still cannot act as a user.

Cheap on the hot path: the gateway signs one assertion per caller per window and reuses it;
services remember assertions they verified (bounded LRU), so most requests cost a dict lookup.

Wire form (header ``Coditect-Caller``): ``<base64url(payload)>.<base64url(signature)>`` where
payload is ``{"c": <caller as JSON>, "exp": <unix seconds>}`` and the signature covers a domain
prefix plus the payload, so no other message this key could sign reads as an assertion.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Final

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from contracts.identity import Caller

log = logging.getLogger(__name__)

HEADER: Final = "Coditect-Caller"
DOMAIN: Final = b"coditect-caller-assertion-v1\x00"
LIFETIME_SECONDS: Final = 60
REUSE_SECONDS: Final = 30  # a fresh assertion at most this often per caller (half its lifetime)
SIGNED_CACHE_SIZE: Final = 10_000
VERIFIED_CACHE_SIZE: Final = 10_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _caller_key(caller: Caller) -> bytes:
    """Canonical bytes of a caller: what is signed and what a request's caller is compared with."""
    return orjson.dumps(caller.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)


def new_signing_key() -> str:
    """A fresh private key as base64url text (what the key file holds)."""
    from cryptography.hazmat.primitives import serialization

    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return _b64(raw)


def public_key_of(private_text: str) -> str:
    from cryptography.hazmat.primitives import serialization

    public = Ed25519PrivateKey.from_private_bytes(_unb64(private_text.strip())).public_key()
    return _b64(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def ensure_signing_key(path: Path) -> str:
    """The gateway's key file, created (0600) on first use; returns the public key to give services."""
    from shared.busauth import write_private

    if not path.exists():
        write_private(path, new_signing_key().encode())
    return public_key_of(path.read_text())


class CallerSigner:
    """The gateway's side: one assertion per caller per ``REUSE_SECONDS``."""

    def __init__(self, private_text: str) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(_unb64(private_text.strip()))
        self._issued: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        # The token verifier hands out one Caller object per token, so the object itself finds its
        # assertion without the canonical JSON: keyed by id, the object held so that no other takes
        # its id while the entry lives.
        self._by_object: OrderedDict[int, tuple[Caller, str, float]] = OrderedDict()

    @classmethod
    def from_file(cls, path: Path) -> CallerSigner:
        return cls(path.read_text())

    def assertion(self, caller: Caller) -> str:
        now = time.time()
        held = self._by_object.get(id(caller))
        if held is not None and held[2] > now:
            return held[1]
        key = _caller_key(caller)
        cached = self._issued.get(key)
        if cached is not None and cached[1] > now:
            self._issued.move_to_end(key)
            token, reuse_until = cached
        else:
            payload = b'{"c":' + key + b',"exp":' + str(int(now) + LIFETIME_SECONDS).encode() + b"}"
            token = f"{_b64(payload)}.{_b64(self._key.sign(DOMAIN + payload))}"
            reuse_until = now + REUSE_SECONDS
            self._issued[key] = (token, reuse_until)
            if len(self._issued) > SIGNED_CACHE_SIZE:
                self._issued.popitem(last=False)
        self._by_object[id(caller)] = (caller, token, reuse_until)
        if len(self._by_object) > SIGNED_CACHE_SIZE:
            self._by_object.popitem(last=False)
        return token


class CallerUnverified(Exception):
    """The request's caller is not vouched for by the gateway."""


class CallerVerifier:
    """A service's side: checks an assertion against the request's caller."""

    def __init__(self, public_texts: str) -> None:
        """``public_texts``: the trusted signers' public keys, comma-separated (the gateway's, and
        the operator tools' for operator-only requests)."""
        self._keys = [
            Ed25519PublicKey.from_public_bytes(_unb64(text.strip())) for text in public_texts.split(",") if text.strip()
        ]
        if not self._keys:
            raise ValueError("no caller-assertion public key given")
        self._verified: OrderedDict[str, tuple[Caller, bytes, float]] = OrderedDict()

    def check(self, caller: Caller, assertion: str | None) -> None:
        """Return if ``assertion`` is a current gateway assertion of exactly ``caller``; else raise."""
        if not assertion:
            raise CallerUnverified("the request names a caller without the gateway's assertion")
        now = time.time()
        cached = self._verified.get(assertion)
        if cached is None:
            cached = self._verify(assertion)
            self._verified[assertion] = cached
            if len(self._verified) > VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        else:
            self._verified.move_to_end(assertion)
        signed_caller, signed_key, expires = cached
        if expires <= now:
            raise CallerUnverified("the caller assertion expired")
        # Equal fields are the same caller: a dict comparison costs a fifth of the canonical JSON,
        # which decides only when they differ (a caller of another model class).
        if caller.__dict__ != signed_caller.__dict__ and signed_key != _caller_key(caller):
            raise CallerUnverified("the caller assertion is for another caller")

    def _verify(self, assertion: str) -> tuple[Caller, bytes, float]:
        try:
            payload_text, signature_text = assertion.split(".", 1)
            payload = _unb64(payload_text)
            signature = _unb64(signature_text)
            if not any(_valid(key, signature, DOMAIN + payload) for key in self._keys):
                raise InvalidSignature
            body = orjson.loads(payload)
            caller = Caller.model_validate(body["c"])
            return caller, _caller_key(caller), float(body["exp"])
        except (ValueError, InvalidSignature, KeyError, TypeError, ValidationError, orjson.JSONDecodeError) as error:
            raise CallerUnverified("the caller assertion is not valid") from error


def _valid(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
