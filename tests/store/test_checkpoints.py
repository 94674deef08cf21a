"""The embedded store checkpoints when the WAL's content needs it, not after every batch once the
WAL *file* has grown: SQLite starts a checkpointed WAL over without shrinking its file, and a test
of the file's size made each later batch pay a checkpoint (two fsyncs)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from shared.store import Transaction
from shared.store.embedded import EmbeddedStore


async def test_a_grown_wal_file_does_not_make_every_batch_checkpoint(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.sqlite3")
    value = os.urandom(2_000)

    async def commit(n: int) -> None:
        def write(tx: Transaction) -> None:
            for k in range(4):
                tx.set(b"k/%d/%d" % (n, k), value)

        await store.run(write)

    try:
        for batch in range(300):
            await asyncio.gather(*(commit(batch * 8 + i) for i in range(8)))
        assert store.wal_bytes() >= 4 * 1024 * 1024, "the WAL file grew past the checkpoint threshold"
        assert 1 <= store.checkpoints < 30, f"{store.checkpoints} checkpoints for about 300 commit batches"
    finally:
        store.close()


async def test_concurrent_commits_share_one_commit(tmp_path: Path) -> None:
    """Group commit is effective under concurrency: transactions queued while the writer commits
    go in its next ``COMMIT`` together."""
    store = EmbeddedStore(tmp_path / "s.sqlite3")

    async def commit(n: int) -> None:
        await store.run(lambda tx: tx.set(b"g/%d" % n, b"v"))

    try:
        await commit(-1)  # the writer thread and its connection exist
        before = store.commit_batches
        for round_ in range(10):
            await asyncio.gather(*(commit(round_ * 64 + i) for i in range(64)))
        batches = store.commit_batches - before
        assert batches <= 10 * 64 // 4, f"{batches} COMMITs for 640 transactions in rounds of 64"
    finally:
        store.close()


async def test_savepoint_journals_stay_in_memory(tmp_path: Path) -> None:
    """The writer runs each transaction of a batch under a savepoint; SQLite journals a savepoint's
    pages in a temporary file unless told otherwise: two more write calls per page (a third of the
    session service's write calls per create). Nothing of the journal needs to survive a crash: the
    WAL is what makes a commit durable."""
    store = EmbeddedStore(tmp_path / "s.sqlite3")
    try:
        await store.run(lambda tx: tx.set(b"k", b"v"))
        connections = list(store._connections)
        assert connections, "the store opened no connection"
        memory = 2  # PRAGMA temp_store: 0 default (a file here), 1 file, 2 memory
        assert [c.execute("PRAGMA temp_store").fetchall()[0][0] for c in connections] == [memory] * len(connections)
    finally:
        store.close()
