"""A directory's move carries the current metadata of everything under it to the new place, whether the
producer reports each child's move too (a monitor: watchdog adds one per entry) or the directory's move
alone (an IDE client), and on a redelivery; a directory bigger than one transaction's share of moves is
carried over several transactions. A directory deleted alone (moved out of the workspace) takes what
was under it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.file_event.conftest import FILE_EVENT_TEST_SETTINGS
from tests.file_event.helpers import (
    User,
    call,
    change,
    connect,
    consumed,
    files_ctx,
    get,
    new_user,
    publish,
    subject_of,
    wait_for,
)
from tests.support import Gateway

SHA = "c" * 64


@pytest.fixture
def file_event_overrides() -> dict[str, Any]:
    # A small bound on the entries one transaction carries: the 30-entry tree below takes several.
    return {**FILE_EVENT_TEST_SETTINGS, "ingest_tree_entries_per_transaction": 7}


async def stored_tree(system: Gateway, count: int) -> tuple[User, list[dict[str, Any]]]:
    """A new user whose workspace holds ``tree(count)``, every change of it consumed."""
    user = await new_user(system)
    before = tree(count)
    await send(system, user, before)
    await consumed(system, len(before))
    return user, before


def tree(count: int = 3) -> list[dict[str, Any]]:
    """a/dir with files and a sub-folder, and a sibling whose name only starts like it."""
    events = [
        change("a", "created", second=0, is_dir=True),
        change("a/dir", "created", second=0, is_dir=True),
        change("a/dir/sub", "created", second=0, is_dir=True),
        change("a/dirty.txt", "created", second=1, size=1, sha256=SHA),
    ]
    for i in range(count):
        events.append(change(f"a/dir/f{i:02}.txt", "created", second=1, size=i, sha256=SHA))
        events.append(change(f"a/dir/f{i:02}.txt", "modified", second=2, size=100 + i, sha256=SHA))
    events.append(change("a/dir/sub/deep.txt", "created", second=1, size=7))
    return events


async def files_of(system: Gateway, user: User) -> dict[str, dict[str, Any]]:
    status, body, _ = await call(system, "GET", "/files", user, limit=500)
    assert status == 200, body
    return {f["path"]: f for f in body["data"]["items"]}


async def send(system: Gateway, user: User, events: list[dict[str, Any]], *, msg_ids: bool = True) -> None:
    nc = await connect(system)
    try:
        await publish(nc, subject_of(user), events, msg_ids=msg_ids)
    finally:
        await nc.close()


def assert_carried(files: dict[str, dict[str, Any]], count: int) -> None:
    """Everything of a/dir is live under b/dir with its size, and marked deleted at its old path."""
    for i in range(count):
        new, old = files[f"b/dir/f{i:02}.txt"], files[f"a/dir/f{i:02}.txt"]
        assert (new["deleted"], new["size"], new["sha256"]) == (False, 100 + i, SHA), new
        assert new["versions"] >= 3, new  # created, modified, then the move: its history goes on
        assert old["deleted"] is True, old
    assert files["b/dir/sub/deep.txt"]["deleted"] is False and files["b/dir/sub/deep.txt"]["size"] == 7
    assert files["b/dir/sub"]["is_dir"] is True and files["b/dir/sub"]["deleted"] is False
    assert files["a/dir/sub/deep.txt"]["deleted"] is True and files["a/dir/sub"]["deleted"] is True
    assert files["a/dirty.txt"]["deleted"] is False  # a sibling, not under a/dir/
    assert "b/dirty.txt" not in files
    live = sorted(path for path, f in files.items() if not f["deleted"])
    assert live == sorted(
        ["a", "a/dirty.txt", "b/dir", "b/dir/sub", "b/dir/sub/deep.txt"] + [f"b/dir/f{i:02}.txt" for i in range(count)]
    )


async def test_a_directory_move_alone_carries_every_file_under_it(system: Gateway) -> None:
    count = 3
    user, before = await stored_tree(system, count)
    move = change("b/dir", "moved", second=3, old_path="a/dir", is_dir=True, actor="claude-code")
    await send(system, user, [move])
    await consumed(system, len(before) + 1)

    files = await files_of(system, user)
    assert_carried(files, count)
    assert files["b/dir/f00.txt"]["versions"] == 3 and files["b/dir/f00.txt"]["last_actor"] == "claude-code"
    # The move is in the history of each child at both paths.
    status, body = await get(system, "/files/history", user, path="b/dir/sub/deep.txt")
    assert status == 200 and [e["event_id"] for e in body["data"]["items"]] == [move["event_id"]]
    status, body = await get(system, "/files/history", user, path="a/dir/f01.txt")
    assert [e["kind"] for e in body["data"]["items"]] == ["created", "modified", "moved"]

    # Delivered again (a monitor restarted past the duplicate window): nothing changes.
    await send(system, user, [move], msg_ids=False)
    await consumed(system, len(before) + 2)
    assert await files_of(system, user) == files


async def test_a_directory_move_with_each_childs_move_too_ends_the_same(system: Gateway) -> None:
    count = 3
    user, before = await stored_tree(system, count)
    moves = [change("b/dir", "moved", second=3, old_path="a/dir", is_dir=True)]
    moves += [change(f"b/dir/f{i:02}.txt", "moved", second=3, old_path=f"a/dir/f{i:02}.txt") for i in range(count)]
    moves += [
        change("b/dir/sub", "moved", second=3, old_path="a/dir/sub", is_dir=True),
        change("b/dir/sub/deep.txt", "moved", second=3, old_path="a/dir/sub/deep.txt"),
    ]
    await send(system, user, moves)
    await consumed(system, len(before) + len(moves))
    assert_carried(await files_of(system, user), count)


async def test_a_directory_bigger_than_a_transactions_share_moves_over_several(system: Gateway) -> None:
    count = 30
    user, before = await stored_tree(system, count)
    ctx = files_ctx(system)
    transactions = ctx.stats.transactions
    await send(system, user, [change("b/dir", "moved", second=3, old_path="a/dir", is_dir=True)])
    await consumed(system, len(before) + 1)
    assert_carried(await files_of(system, user), count)
    # 32 entries under a/dir (sub, 30 files, sub/deep.txt), at most 7 carried by one transaction.
    assert ctx.stats.transactions - transactions >= 32 // 7


async def test_a_directory_deleted_alone_takes_what_was_under_it(system: Gateway) -> None:
    user = await new_user(system)
    before = tree(2)
    await send(system, user, before)
    await consumed(system, len(before))
    await send(system, user, [change("a/dir", "deleted", second=3, is_dir=True)])
    await consumed(system, len(before) + 1)
    files = await files_of(system, user)
    under = [f for path, f in files.items() if path.startswith("a/dir/")]
    assert len(under) == 4 and all(f["deleted"] for f in under)
    assert files["a/dirty.txt"]["deleted"] is False


async def test_a_directory_move_left_half_carried_is_finished_later(system: Gateway) -> None:
    """The transactions after the event's failed (the store went away, the process died): the stored
    job is carried on later (after the next batch here; on start-up after a crash), from its cursor."""
    from services.file_event import trees

    count = 30
    user, before = await stored_tree(system, count)
    real_carry_on = trees.carry_on
    failures: list[bool] = []

    def failing(*args: Any) -> bool:
        failures.append(True)
        raise RuntimeError("the store went away (test)")

    trees.carry_on = failing  # type: ignore[assignment]
    try:
        await send(system, user, [change("b/dir", "moved", second=3, old_path="a/dir", is_dir=True)])
        await consumed(system, len(before) + 1)

        async def tried() -> bool:  # the carrying runs after the batch is counted
            return bool(failures)

        await wait_for(tried, what="a carrying transaction tried")
    finally:
        trees.carry_on = real_carry_on  # type: ignore[assignment]
    files = await files_of(system, user)
    assert any(not f["deleted"] for path, f in files.items() if path.startswith("a/dir/"))  # half carried
    await send(system, user, [change("elsewhere.txt", "created", second=4)])
    await consumed(system, len(before) + 2)

    async def carried() -> bool:  # after the failed job's pause (ingest_tree_retry_seconds)
        files = await files_of(system, user)
        return not any(not f["deleted"] for path, f in files.items() if path.startswith("a/dir/"))

    await wait_for(carried, what="the half-carried move finished")
    files = await files_of(system, user)
    del files["elsewhere.txt"]
    assert_carried(files, count)
