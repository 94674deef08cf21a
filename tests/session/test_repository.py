"""The session key layout on the real embedded store: every index follows its record through any
sequence of changes, pages read a bounded number of entries, and upkeep prunes only what is old."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts import session as api
from contracts.identity import Caller
from services.session import repository as repo
from services.session import rules
from shared.errors import ServiceError
from shared.store import Transaction
from shared.store.embedded import EmbeddedStore

CALLER = Caller(tenant_id=uuid.uuid4(), user_id=uuid.uuid4(), session_id=uuid.uuid4())
START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path / "store" / "session.sqlite3")
    try:
        yield store
    finally:
        store.close()


def _keys(tx: Transaction, space: object) -> list[tuple[object, ...]]:
    rng = space.range()
    return [space.unpack(key) for key, _ in tx.get_range(rng.start, rng.stop)]


def _check_indexes(tx: Transaction, records: dict[uuid.UUID, repo.SessionRecord]) -> None:
    for record in records.values():
        assert repo.get(tx, record.id) == record
    tenant, user = str(CALLER.tenant_id), str(CALLER.user_id)
    live_recent = [
        (k[2], k[3])
        for key, value in tx.get_range(repo.RECENT.range().start, repo.RECENT.range().stop)
        if not value and (k := repo.RECENT.unpack(key))
    ]
    assert sorted(live_recent) == sorted((-repo.micros(r.last_accessed_at), str(r.id)) for r in records.values())
    assert sorted(_keys(tx, repo.STATUS)) == sorted((tenant, user, r.status, str(r.id)) for r in records.values())
    assert sorted(_keys(tx, repo.IDLE)) == sorted(
        (repo.micros(r.last_accessed_at), str(r.id)) for r in records.values() if r.status == "active"
    )
    active = sum(1 for r in records.values() if r.status == "active")
    assert repo.count_active(tx, CALLER.tenant_id, CALLER.user_id, 0) == active


async def test_every_index_follows_its_record_through_any_sequence_of_changes(store: EmbeddedStore) -> None:
    chance = random.Random(7)
    records: dict[uuid.UUID, repo.SessionRecord] = {}
    now = START
    for _ in range(300):
        now += timedelta(milliseconds=chance.randint(0, 3))
        op = chance.choice(["create", "touch", "status", "rename", "delete"] if records else ["create"])
        if op == "create":
            record = rules.new_session(repo.SessionRecord, CALLER, name="s", workspace_path=None, now=now)
            await store.run(lambda tx, r=record: repo.insert(tx, r))
            records[record.id] = record
            continue
        before = records[chance.choice(list(records))]
        if op == "delete":
            await store.run(lambda tx, r=before: repo.remove(tx, r))
            del records[before.id]
            continue
        try:
            if op == "touch":
                after: repo.SessionRecord | None = rules.touched(before, now)
            elif op == "status":
                after = rules.updated(before, name=None, status=chance.choice(api.STATUSES), now=now)
            else:
                after = rules.updated(before, name=chance.choice("abc"), status=None, now=now)
        except ServiceError:
            continue  # a terminated session refuses it
        if after is not None:
            await store.run(lambda tx, b=before, a=after: repo.save(tx, b, a))
            records[after.id] = after
        await store.run(lambda tx: _check_indexes(tx, records))


async def _page_all(
    store: EmbeddedStore, status: api.Status | None, limit: int, max_scan: int, snapshot: datetime
) -> list[list[repo.SessionRecord]]:
    pages, after = [], None
    while True:
        items, after = await store.run(
            lambda tx, a=after: repo.page(
                tx,
                CALLER.tenant_id,
                CALLER.user_id,
                snapshot_us=repo.micros(snapshot),
                after=a,
                status=status,
                limit=limit,
                max_scan=max_scan,
            )
        )
        pages.append(items)
        if after is None:
            return pages


async def test_a_filtered_page_reads_at_most_max_scan_entries_and_goes_on_from_there(store: EmbeddedStore) -> None:
    sessions = [
        rules.new_session(
            repo.SessionRecord, CALLER, name=f"s{i}", workspace_path=None, now=START + timedelta(seconds=i)
        )
        for i in range(25)
    ]
    sessions = [s if i in (3, 17) else s.model_copy(update={"status": "terminated"}) for i, s in enumerate(sessions)]

    def insert_all(tx: Transaction) -> None:
        for session in sessions:
            repo.insert(tx, session)

    await store.run(insert_all)
    later = START + timedelta(minutes=1)
    pages = await _page_all(store, "active", limit=5, max_scan=6, snapshot=later)
    assert [[s.name for s in page] for page in pages] == [[], ["s17"], [], ["s3"], []]
    pages = await _page_all(store, None, limit=10, max_scan=1000, snapshot=later)
    assert [len(page) for page in pages] == [10, 10, 5]
    assert [s.name for page in pages for s in page] == [f"s{i}" for i in range(24, -1, -1)]


async def test_upkeep_prunes_tombstones_and_markers_only_once_no_cursor_or_redelivery_needs_them(
    store: EmbeddedStore,
) -> None:
    first = rules.new_session(repo.SessionRecord, CALLER, name="s", workspace_path=None, now=START)
    await store.run(lambda tx: repo.insert(tx, first))
    touched = [first]
    for minutes in (1, 2, 3):
        after = rules.touched(touched[-1], START + timedelta(minutes=minutes))
        await store.run(lambda tx, b=touched[-1], a=after: repo.save(tx, b, a))
        touched.append(after)

    def tombstones(tx: Transaction) -> int:
        return sum(1 for _, value in tx.get_range(repo.RECENT.range().start, repo.RECENT.range().stop) if value)

    assert await store.run(tombstones) == 3
    # A snapshot taken between the first and second touch still sees the session once, at its old place.
    pages = await _page_all(store, None, 10, 100, START + timedelta(seconds=90))
    assert [s.id for page in pages for s in page] == [first.id]
    assert await store.run(lambda tx: repo.prune_tombstones(tx, START + timedelta(minutes=2), 100)) == 1
    assert await store.run(tombstones) == 2
    assert len(await store.run(lambda tx: tx.get_range(repo.MOVED.range().start, repo.MOVED.range().stop))) == 2

    old, recent = uuid.uuid4(), uuid.uuid4()
    await store.run(lambda tx: repo.mark_processed(tx, old, START))
    await store.run(lambda tx: repo.mark_processed(tx, recent, START + timedelta(days=9)))
    assert await store.run(lambda tx: repo.prune_processed(tx, START + timedelta(days=1), 100)) == 1
    assert await store.run(lambda tx: (repo.processed(tx, old), repo.processed(tx, recent))) == (False, True)
