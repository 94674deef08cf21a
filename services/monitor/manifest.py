"""What the monitor last reported of its tree (path → size, mtime), kept beside the disk buffer and
updated in the same transaction as each batch of changes; compared with the disk on start-up, so
changes made while no monitor ran (a crash, a restart, a pod rescheduled) are reported too."""

from __future__ import annotations

import os
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

from services.monitor.coalesce import RawEvent
from services.monitor.ignore import IgnoreRules


@dataclass(frozen=True, slots=True)
class Entry:
    path: str
    is_dir: bool
    size: int
    mtime_ns: int
    sha256: str | None = None  # as reported (files up to the hashing limit); a tree walk leaves it None


SCHEMA = (
    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, is_dir INTEGER NOT NULL, size INTEGER NOT NULL, "
    "mtime_ns INTEGER NOT NULL, sha256 TEXT)"
)


def create(db: sqlite3.Connection) -> None:
    db.execute(SCHEMA)
    if "sha256" not in {row[1] for row in db.execute("PRAGMA table_info(files)")}:
        db.execute("ALTER TABLE files ADD COLUMN sha256 TEXT")  # a manifest written before it was kept


def entry_of(root: Path, relative: str) -> Entry | None:
    try:
        info = os.stat(root / relative, follow_symlinks=False)
    except OSError:
        return None
    is_dir = stat.S_ISDIR(info.st_mode)
    return Entry(relative, is_dir, 0 if is_dir else info.st_size, 0 if is_dir else info.st_mtime_ns)


def apply(db: sqlite3.Connection, kind: str, path: str, old_path: str | None, entry: Entry | None) -> None:
    """Keep the manifest in step with one reported change (inside the caller's transaction)."""
    if kind in ("deleted", "moved"):
        gone = old_path if kind == "moved" and old_path is not None else path
        db.execute("DELETE FROM files WHERE path = ? OR substr(path, 1, ?) = ?", (gone, len(gone) + 1, gone + "/"))
    if kind != "deleted" and entry is not None:
        db.execute(
            "INSERT INTO files (path, is_dir, size, mtime_ns, sha256) VALUES (?, ?, ?, ?, ?) ON CONFLICT(path) "
            "DO UPDATE SET is_dir = excluded.is_dir, size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "sha256 = excluded.sha256",
            (entry.path, int(entry.is_dir), entry.size, entry.mtime_ns, entry.sha256),
        )


def already_reported(db: sqlite3.Connection, entries: list[Entry]) -> set[str]:
    """The paths whose state as described now is exactly what was last reported of them: a change
    seen twice (the kernel's event arriving after a re-read of the tree reported it, or a burst split
    around the quiet time) is reported once."""
    repeated: set[str] = set()
    for entry in entries:
        row = db.execute("SELECT is_dir, size, mtime_ns, sha256 FROM files WHERE path = ?", (entry.path,)).fetchone()
        if row is not None and entry == Entry(entry.path, bool(row[0]), row[1], row[2], row[3]):
            repeated.add(entry.path)
    return repeated


def walk(root: Path, rules: IgnoreRules) -> dict[str, Entry]:
    """The tree as it is now, without ignored folders (never descended into)."""
    found: dict[str, Entry] = {}
    for directory, folders, files in os.walk(root):
        base = os.path.relpath(directory, root).replace(os.sep, "/")
        prefix = "" if base == "." else base + "/"
        folders[:] = [f for f in folders if not rules.ignored(prefix + f)]
        for name in [*folders, *files]:
            relative = prefix + name
            if rules.ignored(relative):
                continue
            entry = entry_of(root, relative)
            if entry is not None:
                found[relative] = entry
    return found


def load(db: sqlite3.Connection) -> dict[str, Entry]:
    return {
        path: Entry(path, bool(is_dir), size, mtime_ns)
        for path, is_dir, size, mtime_ns in db.execute("SELECT path, is_dir, size, mtime_ns FROM files")
    }


def differences(known: dict[str, Entry], now: dict[str, Entry]) -> list[RawEvent]:
    """What changed between the manifest and the tree: parents before children, deletions last."""
    events = []
    for path in sorted(now):
        before, after = known.get(path), now[path]
        if before is None or before.is_dir != after.is_dir:
            events.append(RawEvent("created", path, after.is_dir))
        elif not after.is_dir and (before.size, before.mtime_ns) != (after.size, after.mtime_ns):
            events.append(RawEvent("modified", path))
    events += [RawEvent("deleted", path, known[path].is_dir) for path in sorted(set(known) - set(now), reverse=True)]
    return events
