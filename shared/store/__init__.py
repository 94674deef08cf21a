"""The FoundationDB-model store: tuple-layer keys, transaction functions run by a retry loop.

``open_store`` picks the backend: FoundationDB when a cluster file is configured, else the
embedded SQLite store on local disk.
"""

from __future__ import annotations

from shared.settings import CommonSettings
from shared.store.base import (
    KEY_SIZE_LIMIT,
    VALUE_SIZE_LIMIT,
    Store,
    StoreError,
    StoreUnavailable,
    Transaction,
    TransactionConflict,
    TransactionTimedOut,
    TxFunction,
    decode_counter,
)


def open_store(settings: CommonSettings, service: str) -> Store:
    if settings.fdb_cluster_file is not None:
        from shared.store.fdb_backend import FdbStore

        return FdbStore(settings.fdb_cluster_file, deadline_seconds=settings.store_deadline_seconds)
    from shared.store.embedded import EmbeddedStore
    from shared.store.legacy import migrate_legacy_store

    path = settings.embedded_store_path(service)
    if path.parent.is_dir():
        migrate_legacy_store(path, service)
    return EmbeddedStore(
        path,
        sync=settings.store_sync,
        deadline_seconds=settings.store_deadline_seconds,
        wal_limit_bytes=settings.store_wal_limit_bytes,
    )


__all__ = [
    "KEY_SIZE_LIMIT",
    "VALUE_SIZE_LIMIT",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Transaction",
    "TransactionConflict",
    "TransactionTimedOut",
    "TxFunction",
    "decode_counter",
    "open_store",
]
