"""Coalescing raw watcher events into one change per path: an editor's save storm (many writes, a
temporary file renamed into place) is one event, a file created and deleted within the window is
none, and moves chain (a→b→c is one move a→c). Plain data in, plain data out: no clock of its own.

A path's pending change is released once the path has been quiet for ``quiet`` seconds, or after
``hold_max`` seconds of continuous writing, so a file written without pause still reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

RawKind = Literal["created", "modified", "deleted", "moved"]
Kind = Literal["created", "modified", "deleted", "moved"]


@dataclass(frozen=True, slots=True)
class RawEvent:
    kind: RawKind
    path: str  # workspace-relative; for moves the destination
    is_dir: bool = False
    src: str | None = None  # moves: the source


@dataclass(slots=True)
class Pending:
    kind: Kind
    is_dir: bool
    first_at: float
    last_at: float
    occurred_at: datetime
    old_path: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    kind: Kind
    is_dir: bool
    occurred_at: datetime
    old_path: str | None = None


def _merge(before: Kind | None, after: Kind) -> Kind | None:
    """The kind a path ends with after ``before`` then ``after`` (None: nothing happened, as seen from outside)."""
    if before is None:
        return after
    if after == "deleted":
        return None if before == "created" else "deleted"
    if before == "deleted":
        return "modified"  # deleted then written again: replaced
    if before == "created":
        return "created"
    return before if before == "moved" else "modified"


class Coalescer:
    def __init__(self, quiet: float, hold_max: float) -> None:
        self.quiet = quiet
        self.hold_max = hold_max
        self.pending: dict[str, Pending] = {}

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, event: RawEvent, now: float, wall: datetime) -> None:
        if event.kind == "moved" and event.src is not None:
            self._move(event.src, event.path, event.is_dir, now, wall)
            return
        before = self.pending.get(event.path)
        if before is not None and before.kind == "moved" and event.kind == "deleted":
            # a→b then b deleted: outside, a is what disappears.
            del self.pending[event.path]
            self._put(before.old_path or event.path, "deleted", event.is_dir, now, wall, None, None)
            return
        kind = _merge(before.kind if before else None, event.kind)
        if kind is None:
            del self.pending[event.path]
            return
        self._put(event.path, kind, event.is_dir, now, wall, before, before.old_path if before else None)

    def _move(self, src: str, dest: str, is_dir: bool, now: float, wall: datetime) -> None:
        before = self.pending.pop(src, None)
        if before is not None and before.kind == "created":
            kind: Kind | None = _merge(self._kind(dest), "created")
            old = None
        elif before is not None and before.kind == "moved" and before.old_path == dest:
            kind, old = "modified", None  # moved back where it was
        else:
            kind, old = "moved", before.old_path if before is not None and before.kind == "moved" else src
        if kind is None:
            self.pending.pop(dest, None)
            return
        self.pending.pop(dest, None)
        self._put(dest, kind, is_dir, now, wall, before, old)

    def _kind(self, path: str) -> Kind | None:
        pending = self.pending.get(path)
        return pending.kind if pending else None

    def _put(
        self,
        path: str,
        kind: Kind,
        is_dir: bool,
        now: float,
        wall: datetime,
        before: Pending | None,
        old_path: str | None,
    ) -> None:
        first = before.first_at if before is not None else now
        self.pending.pop(path, None)  # re-insert: the dict stays in order of last change
        self.pending[path] = Pending(kind, is_dir, first, now, wall, old_path if kind == "moved" else None)

    def due(self, now: float) -> list[Change]:
        """Release the changes whose path is quiet (or held too long), oldest first."""
        ready = [
            path
            for path, p in self.pending.items()
            if now - p.last_at >= self.quiet or now - p.first_at >= self.hold_max
        ]
        return [self._release(path) for path in ready]

    def drain(self) -> list[Change]:
        return [self._release(path) for path in list(self.pending)]

    def next_due_in(self, now: float) -> float | None:
        if not self.pending:
            return None
        return max(
            0.0,
            min(min(p.last_at + self.quiet, p.first_at + self.hold_max) - now for p in self.pending.values()),
        )

    def _release(self, path: str) -> Change:
        p = self.pending.pop(path)
        return Change(path=path, kind=p.kind, is_dir=p.is_dir, occurred_at=p.occurred_at, old_path=p.old_path)
