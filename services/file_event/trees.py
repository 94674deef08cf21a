"""A directory's move (or deletion) carries what is below it: the current metadata of every entry under
the old path goes to the new one (and is marked deleted at the old one), the event joining each entry's
history at both paths. Whether the producer also reports each entry's own move (a monitor does: watchdog
adds one per entry it finds under the destination) or only the directory's (an IDE client may), the
entries end at their new paths; an entry changed after the move (newer ``modified_at``) is left as it is.

Bounded per transaction (FoundationDB refuses 10 MB and 5 s and advises far less): one transaction carries
at most ``ingest_tree_entries_per_transaction`` entries and about ``ingest_tree_bytes_per_transaction``
bytes of writes. What is left is a ``TreeJob`` stored in the transaction that recorded the event (with its
idempotency marker, so a redelivery does not start it over), carried on by further transactions from its
cursor (the last path carried), and resumed when the service starts after a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel

from contracts import file_event as api
from services.file_event import metadata
from services.file_event import repository as repo
from shared.store import Transaction

# Writes of one carried entry beyond four times its path: two metadata values and four keys.
_ENTRY_OVERHEAD_BYTES = 700
_PAGE = 256


class TreeJob(BaseModel):
    """A directory's move (``path`` set) or deletion (``path`` None) and how far its entries are carried."""

    event_id: UUID
    old_path: str
    path: str | None
    occurred_at: datetime
    actor: str
    after: str | None = None


@dataclass
class Budget:
    """What one transaction may still spend on carrying entries."""

    entries: int
    bytes: int

    @property
    def spent(self) -> bool:
        return self.entries <= 0 or self.bytes <= 0


def of_change(change: api.FileChange, before: metadata.Meta | None) -> TreeJob | None:
    """The tree job a change starts, if it moves or deletes a directory (a move is scanned whatever its
    ``is_dir`` says: a client may not say; a file has nothing below it)."""
    if change.kind == "moved":
        assert change.old_path is not None
        if change.old_path == change.path or change.path.startswith(change.old_path + "/"):
            return None  # no place to carry to (a directory cannot move into itself)
        return TreeJob(
            event_id=change.event_id,
            old_path=change.old_path,
            path=change.path,
            occurred_at=change.occurred_at,
            actor=change.actor,
        )
    if change.kind == "deleted" and (change.is_dir or (before is not None and before.is_dir)):
        return TreeJob(
            event_id=change.event_id,
            old_path=change.path,
            path=None,
            occurred_at=change.occurred_at,
            actor=change.actor,
        )
    return None


Get = Callable[[str], metadata.Meta | None]
Put = Callable[[metadata.Meta], object]


def carry(tx: Transaction, keys: repo.WorkspaceKeys, job: TreeJob, budget: Budget, get: Get, put: Put) -> bool:
    """Carry the job's entries from its cursor while the budget lasts; True once none is left.
    ``get`` and ``put`` are the caller's view of metadata (the ingest transaction's cache)."""
    at = repo.micros(job.occurred_at)
    while True:
        # With the budget spent, one key still tells "finished" from "more to carry": a moved file
        # (nothing below it) leaves no job behind however much an earlier move of the batch took.
        page = 1 if budget.spent else min(budget.entries, _PAGE)
        entries = repo.files_under(tx, keys, job.old_path, after=job.after, limit=page)
        if not entries:
            return True
        if budget.spent:
            return False
        for origin in entries:
            if budget.spent:
                break
            job.after = origin.path
            budget.entries -= 1
            if origin.deleted or origin.modified_at > job.occurred_at:
                continue  # gone already (its own move came first), or made after the directory left
            if job.path is not None:
                path = job.path + origin.path[len(job.old_path) :]
                moved = metadata.carried_to(origin, get(path), path, job.occurred_at, job.actor)
                if moved is not None:
                    put(moved)
                repo.history_mark(tx, keys, path, at, job.event_id)
            put(metadata.carried_from(origin, job.occurred_at, job.actor))
            repo.history_mark(tx, keys, origin.path, at, job.event_id)
            budget.bytes -= 4 * len(origin.path.encode()) + _ENTRY_OVERHEAD_BYTES
        else:
            if len(entries) < page:
                return True


def carry_on(tx: Transaction, ws: UUID, event_id: UUID, budget: Budget) -> bool:
    """One more transaction of a stored job; True once it is finished (and removed)."""
    raw = repo.get_tree_job(tx, ws, event_id)
    if raw is None:
        return True
    job = TreeJob.model_validate_json(raw)
    keys = repo.WorkspaceKeys(ws)
    done = carry(
        tx, keys, job, budget, lambda path: repo.get_file(tx, keys, path), lambda info: repo.put_file(tx, keys, info)
    )
    if done:
        repo.clear_tree_job(tx, ws, event_id)
    else:
        repo.put_tree_job(tx, ws, event_id, job.model_dump_json().encode())
    return done
