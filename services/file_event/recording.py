"""One batch of changes into the store, in one transaction: each new event's log, marker and history
entries, each touched path's metadata once, and one ``file.changed`` per workspace staged in the outbox.

Idempotent by (workspace, event id): an event whose marker exists is skipped, so a redelivered batch,
a re-published event, or a transaction retried after an unknown commit result stores nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import orjson

from contracts import file_event as api
from contracts.events import Actor, Event
from contracts.provisioning import workspace_id
from services.file_event import metadata, trees
from services.file_event import repository as repo
from shared.outbox import Outbox
from shared.store import Transaction


@dataclass(frozen=True)
class Owner:
    """Whose workspace a change belongs to: from the subject (bus) or the verified caller (HTTP)."""

    tenant_id: UUID
    user_id: UUID
    workspace_id: UUID


def owner_of_subject(subject: str) -> Owner:
    """``fevt.<tenant>.<user>.<workspace>``, the workspace being that user's; else ValueError."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] != "fevt":
        raise ValueError(f"{subject!r} is not fevt.<tenant>.<user>.<workspace>")
    tenant, user, workspace = (UUID(part) for part in parts[1:])
    if workspace != workspace_id(tenant, user):
        raise ValueError(f"workspace {workspace} is not the workspace of user {user} of tenant {tenant}")
    return Owner(tenant, user, workspace)


# A change, whose it is, and the body it came in (None when it was not received as JSON).
Item = tuple[Owner, api.FileChange, bytes | None]


@dataclass
class Recorded:
    """What a batch's transaction stored: the new events per owner, in batch order, and the directory
    moves whose entries are left for further transactions (workspace, event id)."""

    changes: dict[Owner, list[api.FileChange]] = field(default_factory=dict)
    trees: list[tuple[UUID, UUID]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(changes) for changes in self.changes.values())


class Decoded:
    """Metadata values this process read or wrote lately, decoded: the same bytes read again (the next
    batch touching the path) need no second parse. Keyed by the stored bytes themselves, so a value a
    rolled-back transaction wrote, or another replica changed, is simply not found. Bounded."""

    def __init__(self, limit: int = 50_000) -> None:
        self.limit = limit
        self._infos: dict[tuple[int, str], tuple[bytes, metadata.Meta]] = {}

    def decode(self, key: tuple[int, str], raw: bytes) -> metadata.Meta:
        known = self._infos.get(key)
        if known is not None and known[0] == raw:
            return known[1]
        info = metadata.Meta.decode(raw)
        self.keep(key, raw, info)
        return info

    def keep(self, key: tuple[int, str], raw: bytes, info: metadata.Meta) -> None:
        if len(self._infos) >= self.limit:
            self._infos.clear()
        self._infos[key] = (raw, info)


def record(
    tx: Transaction,
    items: list[Item],
    recorded_at: datetime,
    tree_budget: trees.Budget | None = None,
    decoded: Decoded | None = None,
) -> Recorded:
    """Store the events not stored yet, and carry what moved or deleted directories had below them
    (within ``tree_budget``; the rest is left as tree jobs)."""
    budget = tree_budget or trees.Budget(entries=1000, bytes=1_000_000)
    cache = decoded or Decoded(0)
    stamp = orjson.dumps(recorded_at, option=orjson.OPT_UTC_Z)
    # Per-path maps are keyed by (the workspace id's int, path): a UUID hashes in Python code, an int
    # and a str in C (hashing UUIDs and owners was 3 % of the ingest under load, the profile).
    keys: dict[UUID, repo.WorkspaceKeys] = {}
    spaces: list[repo.WorkspaceKeys] = []  # each item's; a batch is mostly one owner after another
    last: Owner | None = None
    space = None
    for owner, _, _ in items:
        if owner is not last:
            last, space = owner, keys.get(owner.workspace_id)
            if space is None:
                space = keys[owner.workspace_id] = repo.WorkspaceKeys(owner.workspace_id)
        assert space is not None
        spaces.append(space)
    # Every point read the batch needs, in one round (get_many): each event's marker, each path's metadata.
    markers = [space.seen_key(change.event_id) for space, (_, change, _) in zip(spaces, items, strict=True)]
    wanted: dict[tuple[int, str], bytes] = {}
    for space, (owner, change, _) in zip(spaces, items, strict=True):
        ws = owner.workspace_id.int
        for path in (change.path, change.old_path):
            if path is not None and (ws, path) not in wanted:
                wanted[(ws, path)] = space.file_key(path)
    values = tx.get_many([*markers, *wanted.values()])
    stored_before = values[: len(markers)]
    prefetched = dict(zip(wanted, values[len(markers) :], strict=True))
    stored_now: set[bytes] = set()  # markers written by this batch
    files: dict[tuple[int, str], metadata.Meta | None] = {}
    touched: dict[tuple[int, str], repo.WorkspaceKeys] = {}
    recorded = Recorded()

    def current(space: repo.WorkspaceKeys, ws: int, path: str) -> metadata.Meta | None:
        key = (ws, path)
        if key not in files:
            if key in prefetched:
                raw = prefetched[key]
                files[key] = None if raw is None else cache.decode(key, raw)
            else:  # a path below a moved directory
                files[key] = repo.get_file(tx, space, path)
        return files[key]

    def update(space: repo.WorkspaceKeys, ws: int, info: metadata.Meta) -> None:
        files[(ws, info.path)] = info
        touched[(ws, info.path)] = space

    def flush() -> None:
        """Write the metadata changed so far (each path once per batch, however often it changed)."""
        for key, space in touched.items():
            info = files[key]
            assert info is not None
            cache.keep(key, repo.put_file(tx, space, info), info)
        touched.clear()

    last, changes = None, []
    for index, (owner, change, body) in enumerate(items):
        marker = markers[index]
        if stored_before[index] is not None or marker in stored_now:
            continue
        stored_now.add(marker)
        space, ws = spaces[index], owner.workspace_id.int
        repo.append(tx, space, change, stamp, body)
        before = current(space, ws, change.old_path if change.old_path is not None else change.path)
        if change.kind == "moved":
            assert change.old_path is not None
            update(space, ws, metadata.moved_to(before, current(space, ws, change.path), change))
            if change.old_path != change.path:
                update(space, ws, metadata.moved_from(before, change))
        else:
            update(space, ws, metadata.changed(before, change))
        if owner is not last:
            last, changes = owner, recorded.changes.setdefault(owner, [])
        changes.append(change)
        job = trees.of_change(change, before)
        if job is not None:
            flush()  # the scan below reads the store: it must see this batch's changes under the folder
            done = trees.carry(
                tx,
                space,
                job,
                budget,
                lambda path: current(space, ws, path),  # called here, before the loop moves on  # noqa: B023
                lambda info: update(space, ws, info),  # noqa: B023
            )
            if not done:
                repo.put_tree_job(tx, owner.workspace_id, change.event_id, job.model_dump_json().encode())
                recorded.trees.append((owner.workspace_id, change.event_id))
    flush()
    return recorded


def file_changed(owner: Owner, changes: list[api.FileChange]) -> Event:
    """The one ``file.changed`` of a workspace for a committed batch: counts, actors and a sample."""
    actors = list(dict.fromkeys(change.actor for change in changes))
    sample = changes[: api.CHANGED_SAMPLE_MAX]
    data = api.FileChangedData(
        user_id=owner.user_id,
        workspace_id=owner.workspace_id,
        count=len(changes),
        actors=actors,
        changes=[api.ChangedPath(path=c.path, kind=c.kind, old_path=c.old_path, actor=c.actor) for c in sample],
        truncated=len(changes) > len(sample),
        first_occurred_at=min(c.occurred_at for c in changes),
        last_occurred_at=max(c.occurred_at for c in changes),
    )
    if actors == ["user"]:
        actor = Actor(kind="human", user_id=owner.user_id)
    else:  # an AI tool made some of them (each change names its own actor in data)
        actor = Actor(kind="agent", user_id=owner.user_id, agent=actors[0] if len(actors) == 1 else None)
    return Event(
        type=api.FILE_CHANGED,
        tenant_id=owner.tenant_id,
        actor=actor,
        target=f"workspace:{owner.workspace_id}",
        data=data.model_dump(mode="json"),
    )


def record_and_stage(
    tx: Transaction,
    outbox: Outbox,
    items: list[Item],
    recorded_at: datetime,
    tree_budget: trees.Budget | None = None,
    decoded: Decoded | None = None,
) -> Recorded:
    """``record``, then stage one ``file.changed`` per workspace that got new events, in the same transaction."""
    recorded = record(tx, items, recorded_at, tree_budget, decoded)
    for owner, changes in recorded.changes.items():
        outbox.stage(tx, file_changed(owner, changes))
    return recorded
