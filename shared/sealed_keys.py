"""Ed25519 signing keys sealed at rest, for every service that signs (auth: access tokens; audit:
checkpoints).

The store holds each private key sealed under a key-encryption key (KEK) that only the owning
service has: every process can open the store (one SQLite file on a machine, one FoundationDB
cluster in a deployment), so what it holds must be useless without the KEK.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwt.algorithms import OKPAlgorithm
from pydantic import BaseModel, Field, PrivateAttr

ALGORITHM = "EdDSA"
KEK_BYTES = 32
_NONCE_BYTES = 12


class KeyEncryptionError(Exception):
    """The key-encryption key is missing or malformed, or a stored signing key does not open with it."""


class SigningKey(BaseModel):
    kid: str
    kek_id: str | None = Field(default=None, description="Which key-encryption key sealed the private key.")
    sealed_private: str | None = Field(default=None, repr=False, description="base64(nonce ‖ AES-GCM ciphertext).")
    private_pem: str | None = Field(
        default=None, repr=False, description="Plaintext, as versions before sealing stored it; sealed when read."
    )
    public_jwk: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None = Field(default=None, description="When it stops signing; may lie in the future.")
    _private: Ed25519PrivateKey | None = PrivateAttr(default=None)

    def published_until(self, access_ttl: timedelta) -> datetime | None:
        """When the key may leave the JWKS: None while it still signs."""
        return None if self.retired_at is None else self.retired_at + access_ttl

    @property
    def private_key(self) -> Ed25519PrivateKey:
        if self._private is None:
            raise KeyEncryptionError(f"signing key {self.kid} was not opened with the key-encryption key")
        return self._private


class KeyEncryptionKey:
    """AES-256-GCM over each signing key's raw private bytes.

    AES-GCM rather than Fernet: it takes associated data, and binding the kid there means a sealed
    key copied onto another record does not open; Fernet has no associated data (and its
    timestamp buys nothing here). A random 96-bit nonce per seal is safe: a KEK seals a handful
    of keys a month, far below the 2^32 messages where random nonces start to risk a collision.
    """

    def __init__(self, secret: bytes, *, source: str) -> None:
        if len(secret) != KEK_BYTES:
            raise KeyEncryptionError(
                f"the key-encryption key from {source} must be {KEK_BYTES} bytes (base64), not {len(secret)}"
            )
        self._aead = AESGCM(secret)
        self.source = source
        # Names the KEK in records and errors; a hash of 256 random bits reveals nothing about them.
        self.id = hashlib.sha256(b"coditect-auth-kek\x00" + secret).hexdigest()[:16]

    @classmethod
    def from_text(cls, text: str, *, source: str) -> KeyEncryptionKey:
        try:
            secret = base64.b64decode(text.strip(), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError) as error:
            raise KeyEncryptionError(f"the key-encryption key in {source} is not base64 ({error})") from error
        return cls(secret, source=source)

    def seal(self, kid: str, private: Ed25519PrivateKey) -> str:
        raw = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return self.seal_bytes(kid, raw)

    def seal_bytes(self, label: str, raw: bytes) -> str:
        """Seal a secret bound to ``label`` (associated data): it opens only under that label."""
        nonce = os.urandom(_NONCE_BYTES)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, raw, label.encode())).decode()

    def open_bytes(self, label: str, sealed: str, kek_id: str | None) -> bytes:
        """The secret ``seal_bytes`` sealed under ``label``; KeyEncryptionError if it does not open."""
        if kek_id != self.id:
            raise KeyEncryptionError(
                f"{label} was sealed with key-encryption key {kek_id}, "
                f"but {self.source} holds key-encryption key {self.id}: it is the wrong key"
            )
        try:
            blob = base64.b64decode(sealed, validate=True)
            return self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], label.encode())
        except (binascii.Error, ValueError, InvalidTag) as error:
            raise KeyEncryptionError(
                f"{label} does not open with the key-encryption key from {self.source}: its record was altered"
            ) from error

    def open(self, key: SigningKey) -> Ed25519PrivateKey:
        if key.sealed_private is None:
            raise KeyEncryptionError(f"signing key {key.kid} has no sealed private key")
        if key.kek_id != self.id:
            raise KeyEncryptionError(
                f"signing key {key.kid} was sealed with key-encryption key {key.kek_id}, "
                f"but {self.source} holds key-encryption key {self.id}: it is the wrong key"
            )
        try:
            blob = base64.b64decode(key.sealed_private, validate=True)
            raw = self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], key.kid.encode())
        except (binascii.Error, ValueError, InvalidTag) as error:
            raise KeyEncryptionError(
                f"signing key {key.kid} does not open with the key-encryption key from {self.source}: "
                "its record was altered"
            ) from error
        return Ed25519PrivateKey.from_private_bytes(raw)


def public_jwk(private: Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
    return jwk


def new_signing_key(now: datetime, kek: KeyEncryptionKey) -> SigningKey:
    private = Ed25519PrivateKey.generate()
    kid = f"{now:%Y%m%d}-{secrets.token_hex(4)}"
    key = SigningKey(
        kid=kid,
        kek_id=kek.id,
        sealed_private=kek.seal(kid, private),
        public_jwk=public_jwk(private, kid),
        created_at=now,
    )
    key._private = private
    return key


def open_signing_key(key: SigningKey, kek: KeyEncryptionKey) -> bool:
    """Give ``key`` its private half. A record an older version stored in plaintext is sealed on
    the way; True tells the caller to write it back.

    What the JWKS publishes is derived from the sealed key, and a stored public key that differs
    is refused: a process that can write the store but lacks the KEK cannot publish a key of its own.
    """
    sealed_now = False
    if key.sealed_private is None and key.private_pem is not None:
        loaded = serialization.load_pem_private_key(key.private_pem.encode(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise KeyEncryptionError(f"signing key {key.kid} is not an Ed25519 key")
        private = loaded
        key.kek_id, key.sealed_private, key.private_pem = kek.id, kek.seal(key.kid, private), None
        sealed_now = True
    else:
        private = kek.open(key)
    derived = public_jwk(private, key.kid)
    if key.public_jwk.get("x") != derived["x"]:
        raise KeyEncryptionError(f"signing key {key.kid}: the published public key is not the half of its private key")
    key.public_jwk, key._private = derived, private
    return sealed_now


def read_or_create_kek_file(path: Path) -> str:
    """The text of a locally generated KEK, created on first use: the file 0600 in a 0700 folder,
    whatever the umask."""
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    try:
        return path.read_text()
    except FileNotFoundError:
        pass
    # Written whole under a private name, then linked into place: a process starting at the same
    # moment finds no file or the complete key, never a half-written one, and the first link wins.
    temporary = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(base64.urlsafe_b64encode(secrets.token_bytes(KEK_BYTES)) + b"\n")
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink()
    # Keys sealed under this KEK reach the store durably; so must the KEK's name in its folder.
    folder_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)
    return path.read_text()


def load_kek(configured: Path | None, *, generated: Path, setting: str, on_fdb: bool) -> KeyEncryptionKey:
    """The KEK from its mounted file; on the embedded store, generated locally (``generated``) when none is
    configured. ``setting`` names the environment variable in errors."""
    if configured is not None:
        try:
            text = configured.read_text()
        except OSError as error:
            raise KeyEncryptionError(
                f"cannot read the key-encryption key file {configured}: {error.strerror}"
            ) from error
        return KeyEncryptionKey.from_text(text, source=str(configured))
    if on_fdb:
        # A KEK generated inside one container would differ between replicas and die with the container.
        raise KeyEncryptionError(f"{setting} must name the key-encryption key file when the store is FoundationDB")
    return KeyEncryptionKey.from_text(read_or_create_kek_file(generated), source=str(generated))
