"""A user removed from their tenant, or a deleted tenant, ends the workspace sessions they had: the
session service follows ``auth.user_removed`` and ``auth.tenant_deleted`` with durable JetStream
consumers, idempotently by event id, in bounded batches. The auth routes that publish these events
are not part of this test: it publishes well-formed events on the stream as auth will."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import nats as nats_client
import pytest

from contracts import auth
from contracts.events import Actor, Event
from contracts.identity import Caller
from services.session import repository as repo
from services.session import rules, terminations
from services.session.context import SessionContext
from shared.store import Store, StoreUnavailable, Transaction
from tests.session.helpers import User, call, create, events_on, member_of, new_user
from tests.support import Gateway, NatsServer

T = TypeVar("T")


def _ctx(system: Gateway) -> SessionContext:
    return cast(SessionContext, system.services["session"].ctx.components["session"])


def _user_removed(user: User, occurred_at: datetime | None = None) -> Event:
    return Event(
        type=auth.USER_REMOVED,
        tenant_id=uuid.UUID(user.tenant_id),
        actor=Actor(kind="human", user_id=uuid.uuid4()),  # the admin who removed them
        target=f"user:{user.id}",
        occurred_at=occurred_at or datetime.now(UTC),
        data=auth.UserRemovedData(user_id=uuid.UUID(user.id)).model_dump(mode="json"),
    )


def _tenant_deleted(tenant_id: str, user_ids: list[str], occurred_at: datetime | None = None) -> Event:
    return Event(
        type=auth.TENANT_DELETED,
        tenant_id=uuid.UUID(tenant_id),
        actor=Actor(kind="human", user_id=uuid.uuid4()),
        target=f"tenant:{tenant_id}",
        occurred_at=occurred_at or datetime.now(UTC),
        data=auth.TenantDeletedData(user_ids=[uuid.UUID(u) for u in user_ids]).model_dump(mode="json"),
    )


async def _publish(nats: NatsServer, event: Event, msg_id: str | None = None) -> None:
    nc = await nats_client.connect(nats.url)
    try:
        headers = {"Nats-Msg-Id": msg_id or str(event.id)}
        await nc.jetstream().publish(event.subject, event.model_dump_json().encode(), headers=headers)
    finally:
        await nc.close()


async def _statuses(ctx: SessionContext, ids: list[str]) -> list[str]:
    def read(tx: Transaction) -> list[str]:
        return [record.status for i in ids if (record := repo.get(tx, uuid.UUID(i))) is not None]

    return await ctx.store.run(read)


async def _eventually(check: Callable[[], Any], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


def _ended(ctx: SessionContext, ids: list[str]) -> Callable[[], Any]:
    async def check() -> bool:
        return set(await _statuses(ctx, ids)) == {"terminated"}

    return check


async def _insert_many(ctx: SessionContext, tenant_id: str, user_id: str, count: int, at: datetime) -> list[str]:
    """Sessions written straight into the store (hundreds through HTTP would be slow and hit the quota)."""
    caller = Caller(tenant_id=uuid.UUID(tenant_id), user_id=uuid.UUID(user_id), session_id=uuid.uuid4())
    records = [
        rules.new_session(repo.SessionRecord, caller, name=f"s{n}", workspace_path=None, now=at) for n in range(count)
    ]

    def insert(tx: Transaction) -> None:
        for record in records:
            repo.insert(tx, record)

    await ctx.store.run(insert)
    return [str(record.id) for record in records]


async def _terminations_per_session(nats: NatsServer) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for event, _ in await events_on(nats.url, "evt.session.updated"):
        if event["data"]["session"]["status"] == "terminated" and event["actor"]["kind"] == "system":
            counts[event["target"].removeprefix("session:")] += 1
    return counts


async def test_a_removed_user_loses_their_sessions_and_nobody_else_does(system: Gateway, nats: NatsServer) -> None:
    admin = await new_user(system)
    removed = await member_of(system, admin)
    colleague = await member_of(system, admin)
    stranger = await new_user(system)
    active, suspended = await create(system, removed, "a"), await create(system, removed, "s")
    assert (await call(system, "PATCH", f"/sessions/{suspended['id']}", removed, {"status": "suspended"}))[0] == 200
    others = [await create(system, user) for user in (admin, colleague, stranger)]

    await _publish(nats, _user_removed(removed))
    ctx = _ctx(system)
    await _eventually(_ended(ctx, [active["id"], suspended["id"]]))
    assert await _statuses(ctx, [s["id"] for s in others]) == ["active"] * 3
    counts = await _terminations_per_session(nats)
    assert counts[active["id"]] == counts[suspended["id"]] == 1


async def test_a_deleted_tenant_ends_every_session_in_batches_once(
    system: Gateway, nats: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(terminations, "BATCH", 7)
    ctx = _ctx(system)
    admin = await new_user(system)
    member = await member_of(system, admin)
    unlisted = str(uuid.uuid4())  # a user the event does not name still has their sessions ended
    stranger = await new_user(system)
    past = datetime.now(UTC) - timedelta(minutes=1)
    ids = await _insert_many(ctx, admin.tenant_id, admin.id, 23, past)
    ids += await _insert_many(ctx, member.tenant_id, member.id, 9, past)
    ids += await _insert_many(ctx, admin.tenant_id, unlisted, 5, past)
    # Some of the admin's already ended, before: they are skipped, not ended twice.
    already = ids[:4]
    await asyncio.gather(*(call(system, "PATCH", f"/sessions/{i}", admin, {"status": "terminated"}) for i in already))
    stranger_ids = await _insert_many(ctx, stranger.tenant_id, stranger.id, 3, past)

    transactions = 0
    real_run = ctx.store.run

    async def counting_run(fn: Callable[[Transaction], T]) -> T:
        nonlocal transactions
        transactions += 1
        return await real_run(fn)

    monkeypatch.setattr(ctx.store, "run", counting_run)
    event = _tenant_deleted(admin.tenant_id, [admin.id, member.id])
    await _publish(nats, event)
    await _eventually(_ended(ctx, ids))
    await _eventually(lambda: ctx.store.run(lambda tx: repo.processed(tx, event.id)))
    assert transactions >= (len(ids) - len(already)) // 7, "one transaction per batch of at most BATCH"
    assert await _statuses(ctx, stranger_ids) == ["active"] * 3

    await _publish(nats, event, msg_id=f"again-{event.id}")  # redelivered past the duplicate window
    marker = await new_user(system)
    marker_session = await create(system, marker)
    await _publish(nats, _tenant_deleted(marker.tenant_id, [marker.id]))
    await _eventually(_ended(ctx, [marker_session["id"]]))  # handled in stream order: the redelivery is done
    counts = await _terminations_per_session(nats)
    assert {i: counts[i] for i in ids[4:]} == {i: 1 for i in ids[4:]}
    assert all(counts[i] == 0 for i in already), "a session already ended is not ended again"


async def test_only_sessions_created_before_the_removal_end(system: Gateway, nats: NatsServer) -> None:
    admin = await new_user(system)
    removed = await member_of(system, admin)
    older = await create(system, removed, "older")
    cutoff = datetime.now(UTC)
    await asyncio.sleep(0.01)
    newer = await create(system, removed, "newer")  # e.g. re-added since, the consumer lagging
    ctx = _ctx(system)
    await _publish(nats, _user_removed(removed, occurred_at=cutoff))
    await _eventually(_ended(ctx, [older["id"]]))
    assert await _statuses(ctx, [newer["id"]]) == ["active"]


class _FailsAfter:
    """The real store for ``calls`` transactions, then down: a handler interrupted halfway."""

    def __init__(self, store: Store, calls: int) -> None:
        self.store, self.left = store, calls

    async def run(self, fn: Callable[[Transaction], T]) -> T:
        if self.left == 0:
            raise StoreUnavailable("down for this test")
        self.left -= 1
        return await self.store.run(fn)


async def test_a_deletion_interrupted_halfway_resumes_and_ends_each_session_once(
    system: Gateway, nats: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(terminations, "BATCH", 5)
    ctx = _ctx(system)
    admin = await new_user(system)
    ids = await _insert_many(ctx, admin.tenant_id, admin.id, 12, datetime.now(UTC) - timedelta(minutes=1))
    event = _tenant_deleted(admin.tenant_id, [admin.id])
    real = ctx.store
    ctx.store = cast(Store, _FailsAfter(real, 1))
    try:
        with pytest.raises(StoreUnavailable):
            await terminations.on_tenant_deleted(ctx, event)
    finally:
        ctx.store = real
    assert sorted(await _statuses(ctx, ids)) == ["active"] * 7 + ["terminated"] * 5
    assert await terminations.on_tenant_deleted(ctx, event) == 7
    assert await terminations.on_tenant_deleted(ctx, event) == 0  # the marker: nothing twice
    assert set(await _statuses(ctx, ids)) == {"terminated"}


async def test_unreadable_removal_events_are_skipped(system: Gateway, nats: NatsServer) -> None:
    ctx = _ctx(system)
    admin = await new_user(system)
    session = await create(system, admin)
    bad = _user_removed(admin).model_copy(update={"data": {"user": "nobody"}})
    assert await terminations.on_user_removed(ctx, bad) == 0
    no_tenant = _user_removed(admin).model_copy(update={"tenant_id": None})
    assert await terminations.on_user_removed(ctx, no_tenant) == 0
    bad_tenant = _tenant_deleted(admin.tenant_id, []).model_copy(update={"data": {"user_ids": "x"}})
    assert await terminations.on_tenant_deleted(ctx, bad_tenant) == 0
    assert await _statuses(ctx, [session["id"]]) == ["active"]
