"""How a change moves a path's current metadata: plain functions over ``Meta``, no store.

A change older than what a path already shows (a late or reordered delivery) is counted in
``versions`` and kept in the history, but does not roll the current metadata back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import orjson

from contracts import file_event as api


@dataclass(slots=True)
class Meta:
    """A path's current metadata as the ingest builds and stores it: the fields and JSON of the
    contract's ``FileInfo`` (which the queries parse), without a pydantic model per change. The ingest
    makes one per event and writes one per path per batch: pydantic's ``model_construct`` and
    ``model_dump_json`` were about a tenth of the file-event process's time under load (the profile)."""

    path: str
    is_dir: bool
    size: int | None
    sha256: str | None
    modified_at: datetime
    last_actor: str
    versions: int
    deleted: bool

    def encode(self) -> bytes:
        """``FileInfo``'s JSON (times in UTC with ``Z``, as pydantic writes them)."""
        return orjson.dumps(self, option=orjson.OPT_UTC_Z)

    @classmethod
    def decode(cls, raw: bytes) -> Meta:
        """Stored metadata (written by ``encode``, or as ``FileInfo`` JSON without its None fields)."""
        value = orjson.loads(raw)
        at = datetime.fromisoformat(value["modified_at"])
        return cls(
            path=value["path"],
            is_dir=value.get("is_dir", False),
            size=value.get("size"),
            sha256=value.get("sha256"),
            modified_at=at if at.tzinfo is not None else at.replace(tzinfo=UTC),
            last_actor=value["last_actor"],
            versions=value["versions"],
            deleted=value.get("deleted", False),
        )


def _is_newer(change: api.FileChange, current: Meta | None) -> bool:
    return current is None or change.occurred_at >= current.modified_at


def _counted(current: Meta) -> Meta:
    return replace(current, versions=current.versions + 1)


def changed(current: Meta | None, change: api.FileChange) -> Meta:
    """``change.path`` after a created, modified or deleted change (or the target side of a move)."""
    if current is not None and not _is_newer(change, current):
        return _counted(current)
    return Meta(
        path=change.path,
        is_dir=change.is_dir,
        size=change.size if change.size is not None else (current.size if current else None),
        sha256=change.sha256 if change.sha256 is not None else (current.sha256 if current else None),
        modified_at=change.occurred_at,
        last_actor=change.actor,
        versions=(current.versions if current else 0) + 1,
        deleted=change.kind == "deleted",
    )


def moved_to(origin: Meta | None, target: Meta | None, change: api.FileChange) -> Meta:
    """The new path of a move: the origin's metadata (and count of versions) carried over, what the
    event says overriding it."""
    if target is not None and not _is_newer(change, target):
        return _counted(target)
    return Meta(
        path=change.path,
        is_dir=change.is_dir,
        size=change.size if change.size is not None else (origin.size if origin else None),
        sha256=change.sha256 if change.sha256 is not None else (origin.sha256 if origin else None),
        modified_at=change.occurred_at,
        last_actor=change.actor,
        versions=(origin.versions if origin else 0) + 1,
        deleted=False,
    )


def moved_from(origin: Meta | None, change: api.FileChange) -> Meta:
    """The old path of a move: marked deleted."""
    assert change.old_path is not None
    if origin is not None and not _is_newer(change, origin):
        return _counted(origin)
    return Meta(
        path=change.old_path,
        is_dir=change.is_dir,
        size=origin.size if origin else None,
        sha256=origin.sha256 if origin else None,
        modified_at=change.occurred_at,
        last_actor=change.actor,
        versions=(origin.versions if origin else 0) + 1,
        deleted=True,
    )


def carried_to(origin: Meta, target: Meta | None, path: str, at: datetime, actor: str) -> Meta | None:
    """An entry below a directory moved at ``at``, at its new ``path``: its metadata and versions, and
    the move. None when the new path already shows something newer than the move (it stays)."""
    if target is not None and at < target.modified_at:
        return None
    return replace(origin, path=path, modified_at=at, last_actor=actor, versions=origin.versions + 1, deleted=False)


def carried_from(origin: Meta, at: datetime, actor: str) -> Meta:
    """An entry below a directory moved (or deleted) at ``at``, at its old path: gone from there."""
    return replace(origin, modified_at=at, last_actor=actor, versions=origin.versions + 1, deleted=True)
