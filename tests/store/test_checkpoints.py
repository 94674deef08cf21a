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
