"""Plain-code rules of the file-event service: hand-encoded keys equal the tuple layer's, metadata moves
as a change says, and a fetched batch splits under the transaction size bound."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from contracts import file_event as api
from contracts import subjects
from contracts.provisioning import workspace_id
from services.file_event import metadata, trees
from services.file_event import repository as repo
from services.file_event.ingest import Incoming, chunks
from services.file_event.recording import owner_of_subject

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("at", [1, 255, 256, 65_535, 65_536, 1_764_072_000_000_000, 2**63, 0, -5, 2**70])
@pytest.mark.parametrize("path", ["a", "src/é/ü.py", "with\x01ctl", "x" * 4096])
def test_hand_encoded_keys_equal_the_tuple_layer(at: int, path: str) -> None:
    ws, event_id = uuid.uuid4(), uuid.uuid4()
    keys = repo.WorkspaceKeys(ws)
    assert keys.seen_key(event_id) == repo.SEEN.pack((ws, event_id))
    assert keys.log_key(at, event_id) == repo.LOG.pack((ws, at, event_id))
    assert keys.hist_key(path, at, event_id) == repo.HIST.pack((ws, path, at, event_id))
    assert keys.file_key(path) == repo.FILE.pack((ws, path))


def _change(path: str, kind: str = "modified", second: int = 0, **fields: Any) -> api.FileChange:
    return api.FileChange(path=path, kind=kind, occurred_at=T0 + timedelta(seconds=second), **fields)  # type: ignore[arg-type]


def test_changes_count_versions_and_keep_what_an_event_does_not_say() -> None:
    created = metadata.changed(None, _change("a", "created", 1, size=3, sha256="a" * 64))
    modified = metadata.changed(created, _change("a", "modified", 2, actor="cursor"))
    deleted = metadata.changed(modified, _change("a", "deleted", 3))
    assert (modified.size, modified.sha256, modified.versions, modified.last_actor) == (3, "a" * 64, 2, "cursor")
    assert deleted.deleted and deleted.versions == 3 and deleted.size == 3
    assert not metadata.changed(deleted, _change("a", "created", 4)).deleted


def test_a_late_change_is_counted_but_does_not_roll_metadata_back() -> None:
    current = metadata.changed(None, _change("a", "modified", 10, size=10))
    late = metadata.changed(current, _change("a", "deleted", 5, size=1))
    assert (late.size, late.deleted, late.modified_at, late.versions) == (10, False, current.modified_at, 2)


def test_a_move_carries_metadata_and_marks_the_origin_deleted() -> None:
    origin = metadata.changed(None, _change("old", "created", 1, size=7, sha256="b" * 64))
    move = _change("new", "moved", 2, old_path="old", actor="claude-code")
    target = metadata.moved_to(origin, None, move)
    assert (target.path, target.size, target.sha256, target.versions, target.deleted) == ("new", 7, "b" * 64, 2, False)
    left = metadata.moved_from(origin, move)
    assert (left.path, left.deleted, left.versions, left.last_actor) == ("old", True, 2, "claude-code")


def test_only_a_users_own_workspace_subject_names_an_owner() -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    owner = owner_of_subject(subjects.file_subject(tenant, user, workspace_id(tenant, user)))
    assert (owner.tenant_id, owner.user_id) == (tenant, user)
    for subject in (
        subjects.file_subject(tenant, user, uuid.uuid4()),
        subjects.file_subject(tenant, uuid.uuid4(), workspace_id(tenant, user)),
        f"fevt.{tenant}.{user}",
        f"fevt.{tenant}.{user}.{workspace_id(tenant, user)}.extra",
        f"evt.{tenant}.{user}.{workspace_id(tenant, user)}",
        f"fevt.not-a-uuid.{user}.{workspace_id(tenant, user)}",
    ):
        with pytest.raises(ValueError, match=r"workspace|fevt|UUID|hexadecimal"):
            owner_of_subject(subject)


def test_a_batch_splits_under_the_transaction_bound_and_never_leaves_one_out() -> None:
    def item(size: int) -> Incoming:
        return Incoming(SimpleNamespace(data=b"x" * size), None, None)  # type: ignore[arg-type]

    items = [item(1000) for _ in range(100)] + [item(50_000)]
    runs = chunks(items, max_bytes=20_000)
    assert sum(len(run) for run in runs) == len(items)
    assert [i for run in runs for i in run] == items
    assert all(sum(2 * len(i.msg.data) + 400 for i in run) <= 20_000 for run in runs if len(run) > 1)
    assert runs[-1] == [items[-1]]  # bigger than the bound alone: a transaction of its own


def test_a_time_without_a_zone_is_utc_so_times_always_compare() -> None:
    naive = api.FileChange.model_validate({"path": "a", "kind": "created", "occurred_at": "2026-11-25T12:00:00"})
    aware = _change("a", "modified", 1)
    assert naive.occurred_at == T0
    assert metadata.changed(metadata.changed(None, naive), aware).versions == 2


def test_an_entry_carried_by_its_directorys_move_keeps_a_newer_target() -> None:
    origin = metadata.changed(None, _change("a/x", "created", 1, size=4))
    newer = metadata.changed(None, _change("b/x", "created", 9, size=5))
    at = T0 + timedelta(seconds=5)
    assert metadata.carried_to(origin, newer, "b/x", at, "user") is None
    carried = metadata.carried_to(origin, None, "b/x", at, "user")
    assert carried is not None and (carried.path, carried.size, carried.versions, carried.modified_at) == (
        "b/x",
        4,
        2,
        at,
    )
    left = metadata.carried_from(origin, at, "user")
    assert (left.path, left.deleted, left.versions) == ("a/x", True, 2)


def test_a_spent_budget_leaves_a_job_only_where_something_is_left_below(tmp_path: Path) -> None:
    from shared.store.embedded import EmbeddedStore

    store = EmbeddedStore(tmp_path / "files.sqlite3")
    keys = repo.WorkspaceKeys(uuid.uuid4())
    info = metadata.Meta("d/x", False, None, None, T0, "user", 1, False)
    store.run_sync(lambda tx: repo.put_file(tx, keys, info))

    def carried(old: str) -> bool:
        job = trees.TreeJob(event_id=uuid.uuid4(), old_path=old, path="e", occurred_at=T0, actor="user")
        spent = trees.Budget(entries=0, bytes=0)
        return store.run_sync(lambda tx: trees.carry(tx, keys, job, spent, lambda path: None, lambda info: None))

    try:
        assert carried("x.txt") is True  # a file: nothing below it, no job however spent the budget
        assert carried("d") is False
    finally:
        store.close()


def test_decoded_metadata_is_reused_only_for_the_same_bytes() -> None:
    from services.file_event.recording import Decoded

    decoded = Decoded(limit=2)
    key = (uuid.uuid4().int, "a")
    first = metadata.Meta("a", False, 1, None, T0, "user", 1, False)
    raw = first.encode()
    assert decoded.decode(key, raw) == first
    assert decoded.decode(key, raw) is decoded.decode(key, raw)  # parsed once
    changed = dataclasses.replace(first, size=2, versions=2)  # another replica wrote it meanwhile
    assert decoded.decode(key, changed.encode()).size == 2


def test_stored_metadata_is_the_contracts_file_info() -> None:
    """The ingest writes ``Meta``'s JSON; the queries read it as ``FileInfo``: the same fields and values,
    and ``Meta`` reads what ``FileInfo`` wrote before (its None fields left out)."""
    full = metadata.Meta("src/a.py", False, 12, "d" * 64, T0 + timedelta(microseconds=5), "cursor", 3, False)
    info = api.FileInfo.model_validate_json(full.encode())
    assert info.model_dump() == dataclasses.asdict(full)
    sparse = api.FileInfo(path="d", is_dir=True, modified_at=T0, last_actor="user", versions=1, deleted=True)
    read = metadata.Meta.decode(sparse.model_dump_json(exclude_none=True).encode())
    assert dataclasses.asdict(read) == sparse.model_dump()
    assert read.modified_at.tzinfo is not None


@pytest.mark.parametrize(
    "path",
    [
        "a",
        "src/a.py",
        "a/b/c",
        ".hidden",
        "a/.x",
        "..a",
        "a..",
        "a/..b/c",
        "a/b..",
        "...",
        "a/.../b",
        ".",
        "..",
        "./a",
        "a/.",
        "a/./b",
        "a/..",
        "../a",
        "a/../b",
        "/a",
        "a/",
        "a//b",
        "//",
        "/",
        "",
        "a\x00b",
        "é/ü.py",
        "x" * 1024,
        "x" * 1025,
        "é" * 2048,
        "é" * 2049,
        "a/" + "x" * 4094,
        "x" * 4096,
        "x" * 4097,
        "a/\udcff.txt",  # a name that is not UTF-8 (os.fsdecode's surrogate escape)
    ],
)
def test_the_paths_fast_check_agrees_with_the_full_normalisation(path: str) -> None:
    from contracts.file_rules import _normalised, workspace_relative

    try:
        expected: str | None = _normalised(path)
    except ValueError:
        expected = None
    try:
        got: str | None = workspace_relative(path)
    except ValueError:
        got = None
    assert got == expected
