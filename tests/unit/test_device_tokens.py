"""Device tokens: bound to one account, expiring, unforgeable without the sealed key."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from services.auth import repository as repo
from services.auth.device_tokens import DeviceTokens, holder, sign
from services.auth.keys import KeyEncryptionError, KeyEncryptionKey, utcnow
from shared.store.embedded import EmbeddedStore

KEY = secrets.token_bytes(32)
USER = uuid.uuid4()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path / "store" / "auth.sqlite3")
    yield store
    store.close()


def test_a_genuine_token_names_its_account() -> None:
    assert holder(sign("k1", KEY, USER, int(time.time()) + 60), {"k1": KEY}, time.time()) == USER


def test_an_expired_token_names_nobody() -> None:
    assert holder(sign("k1", KEY, USER, int(time.time()) - 1), {"k1": KEY}, time.time()) is None


def test_an_altered_account_or_expiry_breaks_the_mac() -> None:
    token = sign("k1", KEY, USER, int(time.time()) + 60)
    version, kid, user_hex, expires, mac = token.split(".")
    assert holder(f"{version}.{kid}.{uuid.uuid4().hex}.{expires}.{mac}", {"k1": KEY}, time.time()) is None
    assert holder(f"{version}.{kid}.{user_hex}.{int(expires) + 99}.{mac}", {"k1": KEY}, time.time()) is None


def test_a_token_under_an_unknown_key_names_nobody() -> None:
    token = sign("k1", secrets.token_bytes(32), USER, int(time.time()) + 60)
    assert holder(token, {"k1": KEY}, time.time()) is None
    assert holder(token.replace(".k1.", ".k2."), {"k1": KEY}, time.time()) is None


async def test_the_key_is_stored_sealed_and_shared_by_replicas(store: EmbeddedStore) -> None:
    kek = KeyEncryptionKey(secrets.token_bytes(32), source="test")
    first, second = (DeviceTokens(store, kek, timedelta(days=90)) for _ in range(2))
    tokens = await asyncio.gather(first.issue(USER, utcnow()), second.issue(USER, utcnow()))
    assert await first.holder(tokens[1]) == USER and await second.holder(tokens[0]) == USER
    records = await store.run(repo.device_keys)
    assert len(records) == 1
    raw = first._keys[records[0].kid]
    assert raw.hex() not in records[0].model_dump_json() and records[0].sealed


async def test_another_kek_cannot_open_the_key(store: EmbeddedStore) -> None:
    await DeviceTokens(store, KeyEncryptionKey(secrets.token_bytes(32), source="a"), timedelta(days=1)).issue(
        USER, utcnow()
    )
    other = DeviceTokens(store, KeyEncryptionKey(secrets.token_bytes(32), source="b"), timedelta(days=1))
    with pytest.raises(KeyEncryptionError):
        await other.issue(USER, utcnow())
