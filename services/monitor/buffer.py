"""The monitor's disk buffer: every change is written here before it is published, and removed once
JetStream acknowledged it, so changes made while the bus is down (or the monitor restarts) are sent
when it returns. Bounded: past ``max_events`` the oldest are dropped, counted and logged.

One SQLite file in WAL mode, one connection, used from the event loop's thread only.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from services.monitor import manifest

log = logging.getLogger(__name__)

Seen = tuple[str, str, str | None, manifest.Entry | None]  # kind, path, old_path, what the disk shows now


class DiskBuffer:
    def __init__(self, path: Path, max_events: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_events = max_events
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # survives a process crash; a power loss may cost the tail
        # A 256 KiB page cache, not SQLite's 2 MB: appends and removals touch the two ends of the table and
        # the OS keeps the file's pages anyway; after a burst of 10,000 changes the default cache held 1.7 MB
        # more of the monitor's memory (budget: 60 MB resident).
        self.db.execute("PRAGMA cache_size=-256")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT NOT NULL, "
            "body BLOB NOT NULL)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        manifest.create(self.db)
        self.count = int(self.db.execute("SELECT count(*) FROM changes").fetchone()[0])
        row = self.db.execute("SELECT value FROM meta WHERE name = 'dropped'").fetchone()
        self.dropped = int(row[0]) if row else 0

    def append(self, rows: list[tuple[str, bytes]], seen: list[Seen] | None = None) -> None:
        """Buffer changes, and record them in the manifest in the same transaction."""
        if not rows:
            return
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO changes (msg_id, body) VALUES (?, ?)", rows)
            for kind, path, old_path, entry in seen or ():
                manifest.apply(self.db, kind, path, old_path, entry)
            self.count += len(rows)
            excess = self.count - self.max_events
            if excess > 0:
                self.db.execute(
                    "DELETE FROM changes WHERE seq IN (SELECT seq FROM changes ORDER BY seq LIMIT ?)", (excess,)
                )
                self.count -= excess
                self.dropped += excess
                self.db.execute(
                    "INSERT INTO meta (name, value) VALUES ('dropped', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    (self.dropped,),
                )
        if excess > 0:
            log.warning(
                "the disk buffer is full (%d changes): dropped the %d oldest unsent ones (%d dropped in all)",
                self.max_events,
                excess,
                self.dropped,
            )

    def peek(self, limit: int) -> list[tuple[int, str, bytes]]:
        return [
            (int(seq), str(msg_id), bytes(body))
            for seq, msg_id, body in self.db.execute(
                "SELECT seq, msg_id, body FROM changes ORDER BY seq LIMIT ?", (limit,)
            )
        ]

    def remove(self, seqs: list[int]) -> None:
        if not seqs:
            return
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM changes WHERE seq = ?", [(seq,) for seq in seqs])
        self.count -= len(seqs)

    def close(self) -> None:
        self.db.close()
