"""A fetched batch holding many tenants' events is committed in one transaction, not one per tenant,
and every tenant's chain still holds its events in order, once each."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.audit import repository as repo
from services.audit.appender import Appender, read_bodies, transactions
from services.audit.chain import ChainVerifier
from services.audit.context import AuditContext
from services.audit.records import Prepared, prepare
from services.audit.settings import AuditSettings
from shared.store import Transaction
from shared.store.embedded import EmbeddedStore
from tests.audit.helpers import synthetic


class CountingStore(EmbeddedStore):
    """The embedded store, counting the transactions that committed."""

    committed = 0

    async def run(self, fn: Callable[[Transaction], Any], **kwargs: Any) -> Any:
        result = await super().run(fn, **kwargs)
        self.committed += 1
        return result


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CountingStore]:
    opened = CountingStore(tmp_path / "audit.sqlite3")
    try:
        yield opened
    finally:
        opened.close()


def appender_on(store: CountingStore, **settings: Any) -> Appender:
    ctx = AuditContext(store=store, settings=AuditSettings(**settings), signer=None)  # type: ignore[arg-type]
    return Appender(ctx)


def bodies_of(tenants: list[str], per_tenant: int) -> list[bytes]:
    """Interleaved, as events of many tenants arrive: t0 e0, t1 e0, ..., t0 e1, ..."""
    return [
        synthetic(tenant, None, index).model_dump_json().encode() for index in range(per_tenant) for tenant in tenants
    ]


async def records_of(store: EmbeddedStore, tenant: str) -> list[dict[str, Any]]:
    raws = await store.run(partial(repo.records, chain=tenant, after_seq=0, limit=10_000))
    return [orjson.loads(raw) for raw in raws]


def assert_chain_holds(tenant: str, records: list[dict[str, Any]]) -> None:
    verifier = ChainVerifier(tenant_id=tenant, keys={})
    for record in records:
        verifier.feed(record)
    result = verifier.finish()
    assert result.ok, result.reason


async def test_a_batch_of_many_tenants_is_one_transaction_and_every_chain_holds(store: CountingStore) -> None:
    tenants = [str(uuid.uuid4()) for _ in range(20)]
    appender = appender_on(store)
    assert await appender.handle(read_bodies(bodies_of(tenants, 3)), asyncio.Event())
    assert store.committed == 1
    assert appender.appended == 60
    for tenant in tenants:
        records = await records_of(store, tenant)
        assert [record["details"]["index"] for record in records] == [0, 1, 2]
        assert [record["seq"] for record in records] == [1, 2, 3]
        assert_chain_holds(tenant, records)


async def test_a_batch_over_the_chunk_is_split_and_a_redelivered_batch_appends_nothing(store: CountingStore) -> None:
    tenants = [str(uuid.uuid4()) for _ in range(7)]
    appender = appender_on(store, audit_commit_chunk=5)
    batch = bodies_of(tenants, 4)  # 28 events: 6 transactions of at most 5
    assert await appender.handle(read_bodies(batch), asyncio.Event())
    assert store.committed == 6
    assert await appender.handle(read_bodies(batch), asyncio.Event())  # redelivered: found recorded
    assert appender.appended == 28
    for tenant in tenants:
        records = await records_of(store, tenant)
        assert [record["details"]["index"] for record in records] == [0, 1, 2, 3]
        assert_chain_holds(tenant, records)


def prepared(tenant: str, count: int) -> list[Prepared]:
    return [prepare(synthetic(tenant, None, index).model_dump_json().encode()) for index in range(count)]


def test_transactions_keep_each_chain_in_order_and_respect_both_limits() -> None:
    by_chain = {"a": prepared(str(uuid.uuid4()), 7), "b": prepared(str(uuid.uuid4()), 2)}
    groups = transactions(by_chain, count=3)
    assert [sum(len(events) for events in group.values()) for group in groups] == [3, 3, 3]
    flattened = {chain: [event for group in groups for event in group.get(chain, [])] for chain in by_chain}
    assert flattened == by_chain
    large = len(by_chain["a"][0].front) + 400
    assert len(transactions(by_chain, count=1000, size=2 * large)) == 5  # about two events a transaction
    assert transactions({}, count=10) == []
