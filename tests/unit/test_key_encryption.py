"""Signing keys at rest: sealed under the KEK, never readable from the store, refused under another KEK."""

from __future__ import annotations

import base64
import os
import secrets
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auth import repository as repo
from services.auth.app import key_encryption_key
from services.auth.keyring import KeyRing
from services.auth.keys import (
    AccessClaims,
    KeyEncryptionError,
    KeyEncryptionKey,
    SigningKey,
    new_signing_key,
    public_jwk,
    sign_access_token,
    utcnow,
)
from services.auth.settings import AuthSettings
from shared.store.embedded import EmbeddedStore

TTL = timedelta(minutes=5)


def a_kek() -> KeyEncryptionKey:
    return KeyEncryptionKey(secrets.token_bytes(32), source="test")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path / "store" / "coditect.sqlite3")
    yield store
    store.close()


def keyring(store: EmbeddedStore, kek: KeyEncryptionKey, *, rotation_age: timedelta = timedelta(days=30)) -> KeyRing:
    return KeyRing(
        store, kek=kek, rotation_age=rotation_age, published_after_retire=TTL, rotation_min_interval=timedelta(0)
    )


async def stored_records(store: EmbeddedStore) -> list[bytes]:
    rows = await store.run(lambda tx: tx.get_range(repo.SIGNING_KEY.range().start, repo.SIGNING_KEY.range().stop))
    return [value for _, value in rows]


def verifies(token: str, key: SigningKey) -> bool:
    public = jwt.PyJWK(key.public_jwk)
    return bool(jwt.decode(token, public.key, algorithms=["EdDSA"], audience="aud", issuer="iss"))


def token_of(key: SigningKey) -> str:
    claims = AccessClaims(user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), session_id=uuid.uuid4(), roles=[])
    return sign_access_token(key, claims, issuer="iss", audience="aud", now=utcnow(), ttl=TTL)


def private_forms(private: Ed25519PrivateKey) -> list[bytes]:
    """Every way the private key could show up in a record."""
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return [
        b"PRIVATE KEY",
        raw,
        raw.hex().encode(),
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        base64.b64encode(der)[:40],
    ]


async def test_the_stored_record_of_a_signing_key_carries_no_private_material(store: EmbeddedStore) -> None:
    active = await keyring(store, a_kek()).active()
    [record] = await stored_records(store)
    for form in private_forms(active.private_key):
        assert form not in record
    assert b'"sealed_private":"' in record


async def test_a_sealed_key_round_trips_through_the_store_with_its_kek(store: EmbeddedStore) -> None:
    kek = a_kek()
    first = await keyring(store, kek).active()
    # A fresh keyring (another process, a restart) opens what the first one stored.
    again = await keyring(store, kek).active()
    assert again.kid == first.kid
    assert verifies(token_of(again), first)


async def test_a_wrong_kek_is_refused_and_no_new_key_is_made(store: EmbeddedStore) -> None:
    original = await keyring(store, a_kek()).active()
    before = await stored_records(store)
    # Even with the stored key due for rotation, the wrong KEK must not lead to a fresh key.
    stranger = keyring(store, a_kek(), rotation_age=timedelta(0))
    with pytest.raises(KeyEncryptionError, match="wrong key"):
        await stranger.active()
    with pytest.raises(KeyEncryptionError):
        await stranger.jwks()
    assert await stored_records(store) == before
    assert original.kid.encode() in before[0]


def test_a_sealed_key_moved_to_another_kid_does_not_open() -> None:
    kek = a_kek()
    one, two = new_signing_key(utcnow(), kek), new_signing_key(utcnow(), kek)
    moved = SigningKey.model_validate_json(two.model_dump_json())
    moved.sealed_private = one.sealed_private
    with pytest.raises(KeyEncryptionError, match="altered"):
        kek.open(moved)


async def test_a_public_key_swapped_in_the_store_is_refused(store: EmbeddedStore) -> None:
    """A process that can write the store but lacks the KEK cannot publish a key of its own."""
    kek = a_kek()
    key = await keyring(store, kek).active()
    forged = SigningKey.model_validate_json(key.model_dump_json())
    forged.public_jwk = public_jwk(Ed25519PrivateKey.generate(), key.kid)
    await store.run(lambda tx: repo.put_signing_key(tx, forged))
    with pytest.raises(KeyEncryptionError, match="public key"):
        await keyring(store, kek).jwks()


async def test_a_plaintext_key_from_an_older_store_is_sealed_when_loaded(store: EmbeddedStore) -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    legacy = {
        "kid": "legacy-1",
        "private_pem": pem,
        "public_jwk": public_jwk(private, "legacy-1"),
        "created_at": utcnow(),
    }
    old = SigningKey.model_validate(legacy)
    await store.run(lambda tx: repo.put_signing_key(tx, old))
    assert b"PRIVATE KEY" in (await stored_records(store))[0]

    active = await keyring(store, a_kek()).active()
    assert active.kid == "legacy-1"
    assert verifies(token_of(active), old)
    [record] = await stored_records(store)
    for form in private_forms(private):
        assert form not in record


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Files created under this umask are world-writable unless the code sets their mode itself."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_the_generated_kek_is_0600_in_a_0700_folder_and_reused(tmp_path: Path, open_umask: None) -> None:
    settings = AuthSettings(data_dir=tmp_path / "data")
    kek = key_encryption_key(settings)
    path = tmp_path / "data" / "secrets" / "auth-kek"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert key_encryption_key(settings).id == kek.id
    assert [p.name for p in path.parent.iterdir()] == ["auth-kek"]


def test_an_existing_secrets_folder_is_made_private(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "secrets"
    folder.mkdir(parents=True, mode=0o755)
    os.chmod(folder, 0o755)
    key_encryption_key(AuthSettings(data_dir=tmp_path / "data"))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_configured_kek_file_is_used_and_none_is_generated(tmp_path: Path) -> None:
    secret = secrets.token_bytes(32)
    kek_file = tmp_path / "kek"
    kek_file.write_text(base64.b64encode(secret).decode() + "\n")
    settings = AuthSettings(data_dir=tmp_path / "data", signing_key_encryption_key_file=kek_file)
    assert key_encryption_key(settings).id == KeyEncryptionKey(secret, source="x").id
    assert not (tmp_path / "data").exists()


def test_a_missing_or_malformed_kek_file_is_refused(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text(base64.b64encode(b"0123456789").decode())
    with pytest.raises(KeyEncryptionError, match="32 bytes"):
        key_encryption_key(AuthSettings(signing_key_encryption_key_file=short))
    with pytest.raises(KeyEncryptionError, match="cannot read"):
        key_encryption_key(AuthSettings(signing_key_encryption_key_file=tmp_path / "absent"))


def test_foundationdb_without_a_kek_file_refuses_to_generate_one(tmp_path: Path) -> None:
    settings = AuthSettings(data_dir=tmp_path / "data", fdb_cluster_file=tmp_path / "fdb.cluster")
    with pytest.raises(KeyEncryptionError, match="FoundationDB"):
        key_encryption_key(settings)
    assert not (tmp_path / "data").exists()
