"""Directory moves left as tree jobs (services/file_event/trees.py): a job that keeps failing is retried a
bounded number of times, then parked with its error, and never holds up the jobs behind it; stopping the
service does not wait for a huge job to finish, and the job goes on after a restart."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest

from contracts.provisioning import workspace_id
from services.file_event import repository as repo
from services.file_event.metadata import Meta
from tests.conftest import service_env, start_file_event
from tests.file_event.conftest import FILE_EVENT_TEST_SETTINGS
from tests.file_event.helpers import (
    BASE_TIME,
    User,
    call,
    change,
    connect,
    consumed,
    files_ctx,
    new_user,
    publish,
    subject_of,
    wait_for,
)
from tests.support import Gateway, NatsServer

OVERRIDES: dict[str, Any] = {
    **FILE_EVENT_TEST_SETTINGS,
    # Two entries per transaction: a directory of a few thousand entries is a long run of transactions.
    "ingest_tree_entries_per_transaction": 2,
    "ingest_tree_max_attempts": 3,
    "ingest_tree_retry_seconds": 0.05,
}


@pytest.fixture
def file_event_overrides() -> dict[str, Any]:
    return dict(OVERRIDES)


def workspace_of(user: User) -> UUID:
    return workspace_id(UUID(user.tenant_id), UUID(user.id))


async def send(system: Gateway, user: User, events: list[dict[str, Any]]) -> None:
    nc = await connect(system)
    try:
        await publish(nc, subject_of(user), events)
    finally:
        await nc.close()


async def stored_files(system: Gateway, user: User, folder: str, count: int) -> None:
    """``count`` files under ``folder`` written straight into the store (a big tree without publishing it)."""
    store = files_ctx(system).store
    keys = repo.WorkspaceKeys(workspace_of(user))
    for start in range(0, count, 500):

        def write(tx: Any, start: int = start) -> None:
            for i in range(start, min(start + 500, count)):
                info = Meta(f"{folder}/f{i:05}.txt", False, i, None, BASE_TIME, "user", 1, False)
                repo.put_file(tx, keys, info)

        await store.run(write)


async def open_jobs(system: Gateway) -> list[tuple[UUID, UUID]]:
    return await files_ctx(system).store.run(lambda tx: repo.tree_jobs(tx, 100))


async def live_under(system: Gateway, user: User, prefix: str) -> int:
    status, body, _ = await call(system, "GET", "/files", user, prefix=prefix, limit=500)
    assert status == 200, body
    return sum(1 for f in body["data"]["items"] if not f["deleted"])


async def test_a_job_that_keeps_failing_is_parked_and_does_not_hold_up_the_others(system: Gateway) -> None:
    ctx = files_ctx(system)
    # A job that can never be carried (its stored value is unreadable), in the workspace sorting first:
    # every pass over the jobs meets it before any other.
    broken = (UUID(int=0), uuid.uuid4())
    await ctx.store.run(lambda tx: repo.put_tree_job(tx, *broken, b"{not a tree job"))
    user = await new_user(system)
    await stored_files(system, user, "a/dir", 20)
    await send(system, user, [change("b/dir", "moved", second=3, old_path="a/dir", is_dir=True)])
    await consumed(system, 1)

    async def carried() -> bool:
        return await live_under(system, user, "b/dir/") == 20

    await wait_for(carried, what="the move carried past the failing job")

    async def parked() -> bool:
        return ctx.stats.tree_jobs_parked == 1

    await wait_for(parked, what="the failing job parked")
    assert await open_jobs(system) == []  # neither is left to carry
    stored = await ctx.store.run(lambda tx: tx.get(repo.parked_tree_key(*broken)))
    assert stored is not None
    parked = orjson.loads(stored)
    assert parked["job"] == "{not a tree job" and parked["attempts"] == 3 and "ValidationError" in parked["error"]


async def test_stopping_does_not_wait_for_a_huge_move_which_goes_on_after_a_restart(
    system: Gateway, nats: NatsServer, tmp_path: Path
) -> None:
    count = 3000  # 1,500 transactions at two entries each
    user = await new_user(system)
    await stored_files(system, user, "big", count)
    ctx = files_ctx(system)
    await send(system, user, [change("moved", "moved", second=3, old_path="big", is_dir=True)])
    await consumed(system, 1)
    started = ctx.stats.transactions

    async def carrying() -> bool:
        return ctx.stats.transactions - started >= 5

    await wait_for(carrying, what="the move being carried")
    began = time.monotonic()
    await system.services["file_event"].shutdown()
    stopped_in = time.monotonic() - began
    # Stopped between two of the job's transactions: what is left stays stored for the next start.
    store_ws = workspace_of(user)
    assert [ws for ws, _ in await open_jobs_of(tmp_path, store_ws)] == [store_ws], f"stopped after {stopped_in:.1f} s"

    restarted = await start_file_event(service_env(nats.url, tmp_path / "data"), OVERRIDES)
    system.services["file_event"] = restarted  # shut down with the system

    async def finished() -> bool:
        return await open_jobs(system) == []

    await wait_for(finished, timeout=120, what="the move finished after the restart")
    assert await live_under(system, user, "moved/") == min(count, 500)  # one page of the live entries
    assert await live_under(system, user, "big/") == 0


async def open_jobs_of(tmp_path: Path, ws: UUID) -> list[tuple[UUID, UUID]]:
    """The tree jobs in the (stopped) service's store."""
    from services.file_event.settings import FileEventSettings
    from shared.store import open_store

    store = open_store(FileEventSettings(data_dir=tmp_path / "data"), "file_event")
    try:
        return [job for job in await store.run(lambda tx: repo.tree_jobs(tx, 100)) if job[0] == ws]
    finally:
        store.close()
