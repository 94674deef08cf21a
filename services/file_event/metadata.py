"""How a change moves a path's current metadata: plain functions over ``FileInfo``, no store.

A change older than what a path already shows (a late or reordered delivery) is counted in
``versions`` and kept in the history, but does not roll the current metadata back.
"""

from __future__ import annotations

from datetime import datetime

from contracts import file_event as api


def _is_newer(change: api.FileChange, current: api.FileInfo | None) -> bool:
    return current is None or change.occurred_at >= current.modified_at


def _counted(current: api.FileInfo) -> api.FileInfo:
    return current.model_copy(update={"versions": current.versions + 1})


def changed(current: api.FileInfo | None, change: api.FileChange) -> api.FileInfo:
    """``change.path`` after a created, modified or deleted change (or the target side of a move)."""
    if current is not None and not _is_newer(change, current):
        return _counted(current)
    return api.FileInfo.model_construct(  # from validated values: no second validation
        path=change.path,
        is_dir=change.is_dir,
        size=change.size if change.size is not None else (current.size if current else None),
        sha256=change.sha256 if change.sha256 is not None else (current.sha256 if current else None),
        modified_at=change.occurred_at,
        last_actor=change.actor,
        versions=(current.versions if current else 0) + 1,
        deleted=change.kind == "deleted",
    )


def moved_to(origin: api.FileInfo | None, target: api.FileInfo | None, change: api.FileChange) -> api.FileInfo:
    """The new path of a move: the origin's metadata (and count of versions) carried over, what the
    event says overriding it."""
    if target is not None and not _is_newer(change, target):
        return _counted(target)
    return api.FileInfo.model_construct(  # from validated values: no second validation
        path=change.path,
        is_dir=change.is_dir,
        size=change.size if change.size is not None else (origin.size if origin else None),
        sha256=change.sha256 if change.sha256 is not None else (origin.sha256 if origin else None),
        modified_at=change.occurred_at,
        last_actor=change.actor,
        versions=(origin.versions if origin else 0) + 1,
        deleted=False,
    )


def moved_from(origin: api.FileInfo | None, change: api.FileChange) -> api.FileInfo:
    """The old path of a move: marked deleted."""
    assert change.old_path is not None
    if origin is not None and not _is_newer(change, origin):
        return _counted(origin)
    return api.FileInfo.model_construct(  # from validated values: no second validation
        path=change.old_path,
        is_dir=change.is_dir,
        size=origin.size if origin else None,
        sha256=origin.sha256 if origin else None,
        modified_at=change.occurred_at,
        last_actor=change.actor,
        versions=(origin.versions if origin else 0) + 1,
        deleted=True,
    )


def carried_to(
    origin: api.FileInfo, target: api.FileInfo | None, path: str, at: datetime, actor: str
) -> api.FileInfo | None:
    """An entry below a directory moved at ``at``, at its new ``path``: its metadata and versions, and
    the move. None when the new path already shows something newer than the move (it stays)."""
    if target is not None and at < target.modified_at:
        return None
    return origin.model_copy(
        update={"path": path, "modified_at": at, "last_actor": actor, "versions": origin.versions + 1, "deleted": False}
    )


def carried_from(origin: api.FileInfo, at: datetime, actor: str) -> api.FileInfo:
    """An entry below a directory moved (or deleted) at ``at``, at its old path: gone from there."""
    return origin.model_copy(
        update={"modified_at": at, "last_actor": actor, "versions": origin.versions + 1, "deleted": True}
    )
