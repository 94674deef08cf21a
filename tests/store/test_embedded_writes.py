"""The embedded store's commit picks plain values in a fast pass; nothing a transaction may set is lost
by it (a value only has to be an instance of bytes)."""

from __future__ import annotations

from pathlib import Path

from shared.store import Transaction
from shared.store.embedded import EmbeddedStore


class Tagged(bytes):
    """A subclass of bytes, as some libraries return."""


async def test_values_of_every_kind_a_transaction_may_set_are_committed(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.sqlite3")
    try:

        def write(tx: Transaction) -> None:
            tx.set(b"plain", b"1")
            tx.set(b"tagged", Tagged(b"2"))
            tx.add(b"counter", 3)
            tx.set(b"gone", b"x")
            tx.clear(b"gone")

        await store.run(write)
        stored = await store.run(lambda tx: tx.get_many([b"plain", b"tagged", b"counter", b"gone"]))
        assert stored[:2] == [b"1", b"2"]
        assert stored[2] is not None and int.from_bytes(stored[2], "little", signed=True) == 3
        assert stored[3] is None
    finally:
        store.close()
