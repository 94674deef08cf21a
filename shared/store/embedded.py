"""Embedded backend: one SQLite file per service (the embedded analogue of "each service owns its
key prefix"), with FoundationDB's transaction contract.

How a transaction runs, as in FoundationDB:
- The function reads from one snapshot (a read transaction on a connection of the calling thread;
  on the event loop that is inline, with no thread hop) and *buffers* its writes. Nothing it does
  touches the database, so no conflict or lock can surface inside it, and swallowing an exception
  cannot commit half a transaction.
- A read-only transaction ends there. A transaction that writes is committed by the store's one
  writer thread: under SQLite's write lock it re-reads every key and range the function read and
  compares them with what the function saw (optimistic validation, key by key, like FoundationDB's
  conflict ranges); any difference is a conflict and the function runs again on fresh data. Writers
  queued meanwhile share the lock and one ``COMMIT`` (group commit: one WAL sync per batch).
- Limits as FoundationDB's: 5 s per attempt (``transaction_too_old``), 10 MB of mutations and
  conflict ranges (``transaction_too_large``), keys and values ``bytes`` only, no ``\\xff`` keys,
  the transaction object dead once its attempt ended. The retry loop has a total deadline: a
  stalled writer elsewhere costs a caller that deadline (``transaction_timed_out``), never minutes.
- Reads never wait behind writes: WAL readers work while another connection holds the write lock.

The WAL is kept bounded: the writer checkpoints after its batches, truncates the WAL once it passes
``wal_limit_bytes / 2`` and ``journal_size_limit`` caps what stays on disk. SQLite comes from apsw,
which bundles a current SQLite; versions with the documented WAL-reset race are refused.

Durability: ``sync="normal"`` keeps every committed transaction through a crash or ``kill -9`` of
any process; a power loss can drop the last commits. ``sync="full"`` syncs the WAL on every commit
batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import apsw

from shared.store.base import (
    KEY_SIZE_LIMIT,
    SYSTEM_KEY_PREFIX,
    TRANSACTION_AGE_LIMIT_SECONDS,
    TRANSACTION_SIZE_LIMIT,
    VALUE_SIZE_LIMIT,
    StoreError,
    StoreUnavailable,
    TransactionCancelled,
    TransactionConflict,
    TransactionTimedOut,
    TransactionTooLarge,
    TransactionTooOld,
    check_range,
    check_sizes,
    decode_counter,
    encode_counter,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"
_OPEN_TIMEOUT_SECONDS = 5.0
_READ_BUSY_TIMEOUT_MS = 2_000
_LOCK_POLL_MS = 100
_MANY_PER_QUERY = 500  # keys of one get_many query (SQLite allows 32,766 parameters)
_CHECKPOINT_WAIT_MS = 1_000
_BATCH_LIMIT = 256
# Per mutation, FoundationDB counts some bytes beyond key and value; this keeps the estimate honest.
_MUTATION_OVERHEAD = 16


def sqlite_version_is_safe(version: str) -> bool:
    """False for SQLite versions with the WAL-reset race (3.7.0 through 3.51.2; fixed in 3.51.3,
    backported to 3.44.6 and 3.50.7), which several processes sharing one WAL can hit."""
    parts = tuple(int(p) for p in version.split(".")[:3])
    major_minor, patch = parts[:2], parts[2] if len(parts) > 2 else 0
    if parts < (3, 7, 0) or parts >= (3, 51, 3):
        return True
    return (major_minor == (3, 44) and patch >= 6) or (major_minor == (3, 50) and patch >= 7)


def _restrict(path: Path, mode: int) -> None:
    try:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass


class _Add:
    """Atomic adds buffered on a key whose value the transaction has not read."""

    __slots__ = ("delta",)

    def __init__(self, delta: int) -> None:
        self.delta = delta


_Write = bytes | None | _Add


@dataclass
class _Observation:
    """What the function saw in the database: re-checked under the write lock at commit."""

    sql: str
    params: tuple[Any, ...]
    rows: list[tuple[bytes, ...]]


@dataclass
class _Commit:
    observations: list[_Observation]
    range_clears: list[tuple[bytes, bytes]]
    writes: dict[bytes, _Write]
    deadline: float
    future: Future[None] = field(default_factory=Future)


def _query(conn: apsw.Connection, sql: str, params: tuple[Any, ...]) -> list[tuple[bytes, ...]]:
    # apsw gives a BLOB column as bytes and a row as a tuple already: no copy per column (copying them
    # was 6 % of the file-event ingest's time, whose batches read 2,000 keys and check them at commit).
    return list(conn.execute(sql, params))


class EmbeddedTransaction:
    """One attempt of a transaction function: snapshot reads, buffered writes."""

    def __init__(self, conn: apsw.Connection) -> None:
        self._conn = conn
        self._started = time.monotonic()
        self._reading = False
        self._dead = False
        self._error: BaseException | None = None
        self.observations: list[_Observation] = []
        self.writes: dict[bytes, _Write] = {}
        self.range_clears: list[tuple[bytes, bytes]] = []
        self.size = 0

    # Fences.
    def _live(self) -> None:
        if self._dead:
            raise TransactionCancelled("the transaction was used after its attempt ended")
        if self._error is not None:
            raise self._error
        if time.monotonic() - self._started > TRANSACTION_AGE_LIMIT_SECONDS:
            self._poison(TransactionTooOld("the transaction is older than 5 s"))

    def _poison(self, error: BaseException) -> None:
        """A store error seen inside the function fails the commit too, even if the function caught it."""
        self._error = error
        raise error

    def _guarded(self, check: Callable[[], None]) -> None:
        try:
            check()
        except StoreError as error:
            self._poison(error)

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[bytes, ...]]:
        if not self._reading:
            self._conn.execute("BEGIN")
            self._reading = True
        try:
            rows = _query(self._conn, sql, params)
        except apsw.BusyError as error:
            self._poison(TransactionConflict(f"the snapshot could not be read: {error}"))
        except apsw.Error as error:
            raise StoreUnavailable(f"embedded store read failed: {error}") from error
        self.observations.append(_Observation(sql, params, rows))
        self.size += sum(len(p) for p in params if isinstance(p, bytes))
        return rows

    def end_reads(self) -> None:
        if self._reading:
            self._reading = False
            with contextlib.suppress(apsw.Error):
                self._conn.execute("COMMIT")

    def finish(self) -> None:
        self.end_reads()
        self._dead = True

    def check_commit(self) -> None:
        """What FoundationDB checks at commit: a poisoned transaction, its age, its size."""
        if self._error is not None:
            raise self._error
        if time.monotonic() - self._started > TRANSACTION_AGE_LIMIT_SECONDS:
            raise TransactionTooOld("the transaction is older than 5 s")
        if self.size > TRANSACTION_SIZE_LIMIT:
            raise TransactionTooLarge(
                f"the transaction is {self.size:,} bytes; the limit is {TRANSACTION_SIZE_LIMIT:,}"
            )

    # Reads.
    def _cleared(self, key: bytes) -> bool:
        return any(begin <= key < end for begin, end in self.range_clears)

    def _stored(self, key: bytes) -> bytes | None:
        rows = self._read("SELECT value FROM kv WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def get(self, key: bytes) -> bytes | None:
        self._live()
        self._guarded(lambda: check_sizes(key))
        if key in self.writes:
            write = self.writes[key]
            if not isinstance(write, _Add):
                return write
            base = None if self._cleared(key) else self._stored(key)
            return encode_counter(decode_counter(base) + write.delta)
        if self._cleared(key):
            return None
        return self._stored(key)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        self._live()

        def check_all() -> None:
            for key in keys:
                check_sizes(key)

        self._guarded(check_all)
        found: dict[bytes, bytes | None] = {}
        stored: set[bytes] = set()
        for key in keys:
            if key in self.writes or self._cleared(key):
                found[key] = self.get(key)
            else:
                stored.add(key)
        ordered = sorted(stored)
        for start in range(0, len(ordered), _MANY_PER_QUERY):
            chunk = tuple(ordered[start : start + _MANY_PER_QUERY])
            # One observation for the chunk: at commit the same query must return the same rows.
            sql = f"SELECT key, value FROM kv WHERE key IN ({','.join('?' * len(chunk))}) ORDER BY key"  # noqa: S608
            found.update((row[0], row[1]) for row in self._read(sql, chunk))
        return [found.get(key) for key in keys]

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[tuple[bytes, bytes]]:
        self._live()
        self._guarded(lambda: check_range(begin, end))
        if begin >= end:
            return []
        pending = {k: w for k, w in self.writes.items() if begin <= k < end}
        clears_overlap = any(b < end and begin < e for b, e in self.range_clears)
        # Each buffered clear can hide one stored row; a range clear can hide any number.
        store_limit = 0 if clears_overlap or limit <= 0 else limit + sum(1 for w in pending.values() if w is None)
        order = "DESC" if reverse else "ASC"
        sql = f"SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key {order}"  # noqa: S608
        params: tuple[Any, ...] = (begin, end)
        if store_limit:
            sql += " LIMIT ?"
            params = (begin, end, store_limit)
        merged = {row[0]: row[1] for row in self._read(sql, params) if not self._cleared(row[0])}
        for key, write in pending.items():
            if write is None:
                merged.pop(key, None)
            elif isinstance(write, _Add):
                value = self.get(key)
                assert value is not None
                merged[key] = value
            else:
                merged[key] = write
        items = sorted(merged.items(), reverse=reverse)
        return items[:limit] if limit > 0 else items

    # Writes (buffered until commit).
    def set(self, key: bytes, value: bytes) -> None:
        self._live()
        # The common case checked inline (a set is the hottest call of a bulk write); anything else
        # goes through check_sizes for its exact error.
        if not (
            type(key) is bytes
            and type(value) is bytes
            and len(key) <= KEY_SIZE_LIMIT
            and len(value) <= VALUE_SIZE_LIMIT
            and not key.startswith(SYSTEM_KEY_PREFIX)
        ):
            self._guarded(lambda: check_sizes(key, value))
        self.writes[key] = value
        self.size += len(key) + len(value) + _MUTATION_OVERHEAD

    def clear(self, key: bytes) -> None:
        self._live()
        self._guarded(lambda: check_sizes(key))
        self.writes[key] = None
        self.size += len(key) + _MUTATION_OVERHEAD

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self._live()
        self._guarded(lambda: check_range(begin, end))
        if begin >= end:
            return
        for key in [k for k in self.writes if begin <= k < end]:
            del self.writes[key]
        self.range_clears.append((begin, end))
        self.size += len(begin) + len(end) + _MUTATION_OVERHEAD

    def add(self, key: bytes, delta: int) -> None:
        """Atomic add: without a read of the key it adds no conflict, like FoundationDB's."""
        self._live()
        self._guarded(lambda: check_sizes(key))
        write = self.writes.get(key, _Add(0) if not self._cleared(key) else None)
        if isinstance(write, _Add):
            self.writes[key] = _Add(write.delta + delta)
        else:
            self.writes[key] = encode_counter(decode_counter(write) + delta)
        self.size += len(key) + 8 + _MUTATION_OVERHEAD


class EmbeddedStore:
    name = "embedded"

    def __init__(
        self,
        path: Path,
        *,
        sync: str = "normal",
        deadline_seconds: float = 5.0,
        wal_limit_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if sync not in ("normal", "full"):
            raise ValueError("sync must be 'normal' or 'full'")
        self.path = path
        self._wal_path = str(path.with_name(f"{path.name}-wal"))  # stat'ed on every ping: no pathlib work then
        self.deadline_seconds = deadline_seconds
        self.wal_limit_bytes = wal_limit_bytes
        self._sync = sync.upper()
        self._local = threading.local()
        self._connections: list[apsw.Connection] = []
        self._lock = threading.Lock()
        self._commits: queue.SimpleQueue[_Commit | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._closed = False
        self.checkpoints = 0
        self.commit_batches = 0  # COMMITs by this process's writer (group commit: many transactions each)
        self.last_checkpoint_at = time.monotonic()
        # The WAL's content in pages (frames since its last reset, as SQLite's WAL hook reports after
        # each commit), not its file's size: the file keeps its size when SQLite starts the WAL over,
        # so a size test would checkpoint (two fsyncs) after every batch once the file passed 4 MB.
        self._wal_pages = 0
        self._page_size = 4096
        self._warned_at = 0.0

    # Opening.
    def _make_private(self) -> None:
        """Folder 0700, files 0600, whatever the umask. The database file is created here with its
        mode; SQLite gives -wal and -shm the same."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _restrict(self.path.parent, 0o700)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        for name in (self.path.name, f"{self.path.name}-wal", f"{self.path.name}-shm"):
            _restrict(self.path.with_name(name), 0o600)

    def _open(self, *, busy_timeout_ms: int) -> apsw.Connection:
        version = apsw.sqlite_lib_version()
        if not sqlite_version_is_safe(version):
            raise StoreUnavailable(
                f"SQLite {version} has the WAL-reset race (fixed in 3.51.3, 3.50.7, 3.44.6); "
                "the embedded store shares one WAL between processes and refuses it: install a current apsw"
            )
        # Switching a fresh file to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at once
        # there instead of honouring the busy timeout: processes opening a new store together retry.
        deadline = time.monotonic() + _OPEN_TIMEOUT_SECONDS
        delay = 0.001
        while True:
            conn: apsw.Connection | None = None
            try:
                self._make_private()
                conn = apsw.Connection(str(self.path))
                conn.set_busy_timeout(busy_timeout_ms)
                mode = conn.execute("PRAGMA journal_mode").fetchall()
                if str(mode[0][0]).lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL").fetchall()
                conn.execute(f"PRAGMA synchronous = {self._sync}")
                # The writer's per-transaction savepoints journal pages; in a temporary file that was two
                # write calls per page (a third of a session create's). The WAL alone makes commits durable.
                conn.execute("PRAGMA temp_store = MEMORY")
                conn.execute(f"PRAGMA journal_size_limit = {self.wal_limit_bytes}").fetchall()
                conn.execute(_SCHEMA)
                return conn
            except apsw.BusyError as error:
                if conn is not None:
                    conn.close()
                if time.monotonic() > deadline:
                    raise StoreUnavailable(f"cannot open embedded store at {self.path}: {error}") from error
            except (apsw.Error, OSError) as error:
                if conn is not None:
                    conn.close()
                raise StoreUnavailable(f"cannot open embedded store at {self.path}: {error}") from error
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _take_reader(self) -> tuple[apsw.Connection, list[apsw.Connection]]:
        """A read connection of this thread (a second one when a transaction function runs another
        transaction of the same store), and the list to give it back to. Not a context manager: on a
        point read that cost as much as the read."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        free: list[apsw.Connection] | None = getattr(self._local, "free", None)
        if free is None:
            free = self._local.free = []
        if free:
            return free.pop(), free
        conn = self._open(busy_timeout_ms=_READ_BUSY_TIMEOUT_MS)
        conn.wal_autocheckpoint(0)  # only the writer checkpoints
        with self._lock:
            self._connections.append(conn)
        return conn, free

    def _start_writer(self) -> None:
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name=f"store-writer-{self.path.stem}")
                self._writer.daemon = True
                self._writer.start()

    # Running transactions.
    def _attempt(self, fn: Callable[[EmbeddedTransaction], T]) -> tuple[T, _Commit | None]:
        conn, free = self._take_reader()
        try:
            tx = EmbeddedTransaction(conn)
            try:
                result = fn(tx)
                tx.check_commit()
            finally:
                tx.finish()
        finally:
            free.append(conn)
        if not tx.writes and not tx.range_clears:
            return result, None
        return result, _Commit(tx.observations, tx.range_clears, tx.writes, deadline=0.0)

    def run_sync(self, fn: Callable[[EmbeddedTransaction], T]) -> T:
        """Run ``fn`` in this thread, its commit on the writer thread; retry until the deadline."""
        deadline = time.monotonic() + self.deadline_seconds
        attempt = 0
        while True:
            try:
                result, commit = self._attempt(fn)
                if commit is not None:
                    commit.deadline = deadline
                    self._submit(commit)
                    commit.future.result()
                return result
            except StoreError as error:
                attempt = self._backoff(error, attempt, deadline)
                time.sleep(_delay(attempt))

    async def run(self, fn: Callable[[EmbeddedTransaction], T]) -> T:
        """Run ``fn`` inline (reads need no thread hop), its commit on the writer thread."""
        deadline = time.monotonic() + self.deadline_seconds
        attempt = 0
        while True:
            try:
                result, commit = self._attempt(fn)
                if commit is not None:
                    commit.deadline = deadline
                    self._submit(commit)
                    await asyncio.wrap_future(commit.future)
                return result
            except StoreError as error:
                attempt = self._backoff(error, attempt, deadline)
                await asyncio.sleep(_delay(attempt))

    def _backoff(self, error: StoreError, attempt: int, deadline: float) -> int:
        if not error.retryable:
            raise error
        if time.monotonic() + _delay(attempt + 1) > deadline:
            raise TransactionTimedOut(
                f"no commit within {self.deadline_seconds:g}s ({error.__class__.__name__}: {error})"
            ) from error
        return attempt + 1

    def _submit(self, commit: _Commit) -> None:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        self._start_writer()
        self._commits.put(commit)

    # The writer thread.
    def _write_loop(self) -> None:
        conn: apsw.Connection | None = None
        while True:
            first = self._commits.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < _BATCH_LIMIT:
                try:
                    more = self._commits.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._commits.put(None)
                    break
                batch.append(more)
            try:
                if conn is None:
                    conn = self._open(busy_timeout_ms=_LOCK_POLL_MS)
                    page_size = conn.execute("PRAGMA page_size").fetchall()[0][0]
                    self._page_size = page_size if isinstance(page_size, int) else 4096
                    conn.set_wal_hook(self._on_wal)  # replaces SQLite's autocheckpoint: the writer decides
                    with self._lock:
                        self._connections.append(conn)
                # Backpressure may hold this batch, never past the time its commits have left.
                self._checkpoint_if_needed(conn, until=min(c.deadline for c in batch) - 1.0)
                self._commit_batch(conn, batch)
                self._checkpoint_if_needed(conn)
            except BaseException as error:  # the connection is unusable: fail the batch, reopen
                log.warning("store writer failed a batch (%s); reopening", error)
                for commit in batch:
                    if not commit.future.done():
                        commit.future.set_exception(
                            error if isinstance(error, StoreError | StoreUnavailable) else StoreUnavailable(str(error))
                        )
                if conn is not None:
                    with contextlib.suppress(apsw.Error):
                        conn.close()
                    conn = None

    def _lock_database(self, conn: apsw.Connection, batch: list[_Commit]) -> list[_Commit]:
        """Take SQLite's write lock, polling, while any commit of the batch still has time."""
        while True:
            live = [c for c in batch if not c.future.done()]
            now = time.monotonic()
            for commit in live:
                if now > commit.deadline:
                    commit.future.set_exception(TransactionTimedOut("the write lock stayed taken past the deadline"))
            live = [c for c in live if not c.future.done()]
            if not live:
                return []
            try:
                conn.execute("BEGIN IMMEDIATE")
                return live
            except apsw.BusyError:
                continue

    def _commit_batch(self, conn: apsw.Connection, batch: list[_Commit]) -> None:
        live = self._lock_database(conn, batch)
        if not live:
            return
        committed: list[_Commit] = []
        try:
            for index, commit in enumerate(live):
                if any(_query(conn, o.sql, o.params) != o.rows for o in commit.observations):
                    commit.future.set_exception(TransactionConflict("a key or range it read has changed"))
                    continue
                conn.execute(f"SAVEPOINT c{index}")
                try:
                    _apply(conn, commit)
                except BaseException as error:
                    conn.execute(f"ROLLBACK TO c{index}")
                    conn.execute(f"RELEASE c{index}")
                    commit.future.set_exception(error)
                    continue
                conn.execute(f"RELEASE c{index}")
                committed.append(commit)
            conn.execute("COMMIT")
            self.commit_batches += 1
        except BaseException:
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
            raise
        for commit in committed:
            commit.future.set_result(None)

    def _checkpoint_if_needed(self, conn: apsw.Connection, until: float | None = None) -> None:
        """Keep the WAL bounded. Past 4 MB a passive checkpoint; past a quarter of the bound a
        truncating one, which waits (up to a second) for the other processes' writers and readers,
        whose transactions last milliseconds; past three quarters the writer keeps trying before it
        commits anything more (backpressure: every process's writer does the same, so one succeeds)."""
        size = self._wal_pages * self._page_size
        if size < 4 * 1024 * 1024:
            return
        if size <= self.wal_limit_bytes // 4:
            with contextlib.suppress(apsw.BusyError, apsw.LockedError):
                self._checkpointed(*conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE))
            return
        conn.set_busy_timeout(_CHECKPOINT_WAIT_MS)
        try:
            while True:
                try:
                    self._checkpointed(*conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE))
                    return
                except (apsw.BusyError, apsw.LockedError) as error:
                    size = self.wal_bytes()
                    if size <= self.wal_limit_bytes * 3 // 4 or until is None or time.monotonic() > until:
                        return
                    if time.monotonic() - self._warned_at > 10:
                        self._warned_at = time.monotonic()
                        log.warning("WAL of %s at %.0f MB, not truncated yet (%s)", self.path.name, size / 2**20, error)
        finally:
            conn.set_busy_timeout(_LOCK_POLL_MS)

    def _checkpointed(self, log_frames: int, checkpointed_frames: int) -> None:
        self.checkpoints += 1
        self.last_checkpoint_at = time.monotonic()
        # Every frame copied: the next commit starts the WAL over (its hook then says so).
        self._wal_pages = 0 if checkpointed_frames >= log_frames else log_frames

    def _on_wal(self, conn: apsw.Connection, name: str, pages: int) -> int:
        self._wal_pages = pages
        return int(apsw.SQLITE_OK)

    # Health and metrics.
    def wal_bytes(self) -> int:
        try:
            return os.stat(self._wal_path).st_size
        except OSError:  # no WAL yet, or no store folder at all (the ping says the store is unavailable)
            return 0

    def stats(self) -> dict[str, float]:
        return {
            "wal_bytes": self.wal_bytes(),
            "wal_limit_bytes": self.wal_limit_bytes,
            "checkpoints": self.checkpoints,
            "seconds_since_checkpoint": round(time.monotonic() - self.last_checkpoint_at, 1),
        }

    async def check(self) -> None:
        try:
            await self.run(lambda tx: tx.get(b"\x00health"))
        except StoreUnavailable:
            raise
        except Exception as error:
            raise StoreUnavailable(f"embedded store not answering: {error}") from error

    def close(self) -> None:
        self._closed = True
        if self._writer is not None:
            self._commits.put(None)
            self._writer.join(timeout=10)
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(apsw.Error):
                    conn.close()
            self._connections.clear()


def _apply(conn: apsw.Connection, commit: _Commit) -> None:
    for begin, end in commit.range_clears:
        conn.execute("DELETE FROM kv WHERE key >= ? AND key < ?", (begin, end))
    # Each key is written once (the last write won in the buffer), so the order between keys does not
    # matter: sets and clears go to SQLite in one executemany each (its C loop, not one call per key).
    # The plain values are picked in one comprehension (a bulk write is all of them: the file-event ingest
    # commits 4,000 a batch); clears and counters take a second pass only if there are any.
    writes = commit.writes
    sets: list[tuple[bytes, bytes]] = [(key, value) for key, value in writes.items() if type(value) is bytes]
    if len(sets) < len(writes):
        clears: list[tuple[bytes]] = []
        for key, write in writes.items():
            if write is None:
                clears.append((key,))
            elif isinstance(write, _Add):
                row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
                sets.append((key, encode_counter(decode_counter(bytes(row[0]) if row else None) + write.delta)))
            elif type(write) is not bytes:  # a subclass of bytes: a value too, as plain bytes
                sets.append((key, bytes(write)))
        if clears:
            conn.executemany("DELETE FROM kv WHERE key = ?", clears)
    if sets:
        conn.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", sets)


def _delay(attempt: int) -> float:
    return float(min(0.001 * 2**attempt, 0.05))


__all__ = ["EmbeddedStore", "EmbeddedTransaction", "sqlite_version_is_safe"]
