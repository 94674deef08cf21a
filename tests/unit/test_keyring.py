"""The keyring over a real embedded store, on a clock the test moves: the rotation limit, the
hand-over from the old key to the new one, pruning of keys that left the JWKS, and the JWKS
served from the cache."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.auth import keyring as keyring_module
from services.auth import repository as repo
from services.auth.keyring import HANDOVER, KeyRing, RotationTooSoon
from services.auth.keys import KeyEncryptionKey, utcnow
from shared.store.embedded import EmbeddedStore

PUBLISHED_AFTER_RETIRE = timedelta(minutes=5, seconds=30)
MIN_INTERVAL = timedelta(hours=1)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(utcnow())
    monkeypatch.setattr(keyring_module, "utcnow", clock)
    return clock


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path / "store" / "coditect.sqlite3")
    yield store
    store.close()


@pytest.fixture
def ring(store: EmbeddedStore) -> KeyRing:
    return KeyRing(
        store,
        kek=KeyEncryptionKey(secrets.token_bytes(32), source="test"),
        rotation_age=timedelta(days=30),
        published_after_retire=PUBLISHED_AFTER_RETIRE,
        rotation_min_interval=MIN_INTERVAL,
    )


@pytest.fixture
def always_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock here is not the cache's: every call reads the store."""
    monkeypatch.setattr(keyring_module, "CACHE_SECONDS", -1.0)


async def stored_kids(store: EmbeddedStore) -> list[str]:
    return [key.kid for key in await store.run(repo.signing_keys)]


async def published_kids(ring: KeyRing) -> set[str]:
    return {jwk["kid"] for jwk in (await ring.jwks())["keys"]}


async def test_a_second_rotation_within_the_minimum_interval_is_refused(ring: KeyRing, clock: Clock) -> None:
    first = await ring.active()
    clock.advance(timedelta(hours=2))
    second = await ring.rotate()
    assert second.kid != first.kid
    clock.advance(timedelta(minutes=10))
    with pytest.raises(RotationTooSoon) as refused:
        await ring.rotate()
    assert refused.value.retry_after == pytest.approx(50 * 60)
    clock.advance(timedelta(minutes=50))
    assert (await ring.rotate()).kid not in {first.kid, second.kid}


async def test_a_rotation_right_after_the_first_key_is_refused(ring: KeyRing, clock: Clock) -> None:
    await ring.active()
    with pytest.raises(RotationTooSoon):
        await ring.rotate()


async def test_scheduled_rotation_is_not_held_back_by_the_limit(
    store: EmbeddedStore, clock: Clock, always_reload: None
) -> None:
    ring = KeyRing(
        store,
        kek=KeyEncryptionKey(secrets.token_bytes(32), source="test"),
        rotation_age=timedelta(minutes=1),
        published_after_retire=PUBLISHED_AFTER_RETIRE,
        rotation_min_interval=MIN_INTERVAL,
    )
    await ring.active()
    clock.advance(timedelta(minutes=2))
    await ring.active()
    assert len(await stored_kids(store)) == 2


async def test_the_old_key_signs_until_the_hand_over_while_both_are_published(ring: KeyRing, clock: Clock) -> None:
    old = await ring.active()
    clock.advance(timedelta(hours=2))
    new = await ring.rotate()
    # Other replicas may serve a JWKS up to a cache period old: the new key is published first.
    assert (await ring.active()).kid == old.kid
    assert await published_kids(ring) == {old.kid, new.kid}
    clock.advance(HANDOVER)
    assert (await ring.active()).kid == new.kid
    assert await published_kids(ring) == {old.kid, new.kid}


async def test_a_retired_key_is_deleted_from_the_store_once_it_left_the_jwks(
    ring: KeyRing, store: EmbeddedStore, clock: Clock, always_reload: None
) -> None:
    old = await ring.active()
    clock.advance(timedelta(hours=2))
    new = await ring.rotate()
    clock.advance(HANDOVER + PUBLISHED_AFTER_RETIRE - timedelta(seconds=1))
    assert await published_kids(ring) == {old.kid, new.kid}
    assert await stored_kids(store) == [old.kid, new.kid]
    clock.advance(timedelta(seconds=2))
    assert await published_kids(ring) == {new.kid}
    assert await stored_kids(store) == [new.kid]
    raw = await store.run(lambda tx: tx.get_range(repo.SIGNING_KEY.range().start, repo.SIGNING_KEY.range().stop))
    assert all(old.kid.encode() not in key + value for key, value in raw)


class CountedRuns:
    """Counts the store transactions the keyring runs."""

    def __init__(self, store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        run = store.run

        async def counted(fn: Callable[[Any], Any]) -> Any:
            self.count += 1
            return await run(fn)

        monkeypatch.setattr(store, "run", counted)


async def test_jwks_calls_read_the_store_at_most_once_while_the_cache_is_fresh(
    ring: KeyRing, store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = CountedRuns(store, monkeypatch)
    first = await ring.jwks()
    for _ in range(100):
        assert await ring.jwks() == first
    await asyncio.gather(*(ring.jwks() for _ in range(100)))
    assert runs.count == 1


async def test_jwks_does_not_queue_behind_signing(ring: KeyRing) -> None:
    await ring.active()
    async with ring._lock:  # as while a signing request reloads the keys
        await asyncio.wait_for(ring.jwks(), 1)


async def test_a_stale_cache_is_reloaded_once_for_concurrent_jwks_calls(
    ring: KeyRing, store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ring.jwks()
    monkeypatch.setattr(keyring_module, "CACHE_SECONDS", 0.05)
    await asyncio.sleep(0.1)
    runs = CountedRuns(store, monkeypatch)
    await asyncio.gather(*(ring.jwks() for _ in range(50)))
    assert runs.count == 1


async def test_the_jwks_lists_a_new_key_right_after_rotation(
    ring: KeyRing, store: EmbeddedStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ring.jwks()
    clock.advance(timedelta(hours=2))
    new = await ring.rotate()
    runs = CountedRuns(store, monkeypatch)
    assert new.kid in await published_kids(ring)
    assert runs.count == 0
