"""Embedded backend: SQLite in WAL mode, one file shared by every service process on a machine.

Why SQLite: it ships with Python, is durable and transactional across processes, and orders
BLOB keys bytewise (memcmp) exactly as FoundationDB orders tuple-layer keys. On this machine
it committed single-key transactions several times faster than LMDB with an fsync per commit
(see README, ``task bench``).

Transactions are optimistic, like FoundationDB's: a function starts as a deferred read
transaction on a snapshot; its first write takes the write lock, which SQLite refuses with
SQLITE_BUSY if another process committed since the snapshot was taken. That is a conflict:
the function runs again, and from the second attempt on it takes the write lock up front, so
a busy key cannot starve a transaction. Writers are thus serialized and every committed
transaction saw the latest state: serializable isolation.

Durability: ``sync="normal"`` (the default) keeps every committed transaction through a crash
or ``kill -9`` of any process; a power loss can drop the last commits. ``sync="full"`` syncs
the WAL on every commit.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from shared.store.base import (
    StoreUnavailable,
    TransactionConflict,
    check_sizes,
    decode_counter,
    encode_counter,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"
_MAX_ATTEMPTS = 50
_BUSY_TIMEOUT_MS = 5_000


def _restrict(path: Path, mode: int) -> None:
    try:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass


def _is_busy(error: sqlite3.OperationalError) -> bool:
    text = str(error)
    return "locked" in text or "busy" in text


class _SqliteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        try:
            self._conn.execute(sql, params)
        except sqlite3.OperationalError as error:
            if _is_busy(error):
                raise TransactionConflict(str(error)) from error
            raise

    def get(self, key: bytes) -> bytes | None:
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set(self, key: bytes, value: bytes) -> None:
        check_sizes(key, value)
        self._write("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def clear(self, key: bytes) -> None:
        self._write("DELETE FROM kv WHERE key = ?", (key,))

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self._write("DELETE FROM kv WHERE key >= ? AND key < ?", (begin, end))

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[tuple[bytes, bytes]]:
        order = "DESC" if reverse else "ASC"
        sql = f"SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key {order}"  # noqa: S608
        if limit > 0:
            sql += f" LIMIT {int(limit)}"
        return [(bytes(k), bytes(v)) for k, v in self._conn.execute(sql, (begin, end))]

    def add(self, key: bytes, delta: int) -> None:
        self.set(key, encode_counter(decode_counter(self.get(key)) + delta))


class EmbeddedStore:
    name = "embedded"

    def __init__(self, path: Path, *, sync: str = "normal", threads: int = 4) -> None:
        if sync not in ("normal", "full"):
            raise ValueError("sync must be 'normal' or 'full'")
        self.path = path
        self._sync = sync.upper()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="store")

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _make_private(self) -> None:
        """Folder 0700, files 0600, whatever the umask: every service's records are in this one file.
        The database file is created here with its mode; SQLite gives -wal and -shm the same."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _restrict(self.path.parent, 0o700)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        for name in (self.path.name, f"{self.path.name}-wal", f"{self.path.name}-shm"):
            _restrict(self.path.with_name(name), 0o600)

    def _open(self) -> sqlite3.Connection:
        # Switching a fresh file to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at
        # once there instead of honouring busy_timeout: several processes or threads opening a new
        # store together must wait and try again.
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        delay = 0.001
        while True:
            conn: sqlite3.Connection | None = None
            try:
                self._make_private()
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self._sync}")
                conn.execute(_SCHEMA)
                return conn
            except sqlite3.OperationalError as error:
                if conn is not None:
                    conn.close()
                if not _is_busy(error) or time.monotonic() > deadline:
                    raise StoreUnavailable(f"cannot open embedded store at {self.path}: {error}") from error
            except (sqlite3.Error, OSError) as error:
                if conn is not None:
                    conn.close()
                raise StoreUnavailable(f"cannot open embedded store at {self.path}: {error}") from error
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def run_sync(self, fn: Callable[[_SqliteTransaction], T]) -> T:
        conn = self._connection()
        tx = _SqliteTransaction(conn)
        for attempt in range(_MAX_ATTEMPTS):
            try:
                conn.execute("BEGIN IMMEDIATE" if attempt else "BEGIN")
                result = fn(tx)
                conn.execute("COMMIT")
                return result
            except TransactionConflict:
                conn.rollback()
            except sqlite3.OperationalError as error:
                conn.rollback()
                if not _is_busy(error):
                    raise
            except BaseException:
                conn.rollback()
                raise
            time.sleep(min(0.001 * 2**attempt, 0.05))
        raise TransactionConflict(f"transaction still conflicting after {_MAX_ATTEMPTS} attempts")

    async def run(self, fn: Callable[[_SqliteTransaction], T]) -> T:
        loop = asyncio.get_running_loop()
        # The caller's context (its trace) travels into the transaction function.
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, context.run, self.run_sync, fn)

    async def check(self) -> None:
        await self.run(lambda tx: tx.get(b"\xff/health"))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
