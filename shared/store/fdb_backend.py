"""FoundationDB backend through the official client library (selected by ``FDB_CLUSTER_FILE``).

Needs the FoundationDB client shared library (libfdb_c) at run time: the compose and k8s
images install it. Blocking client calls run on a thread pool so the event loop never waits.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from shared.store.base import StoreUnavailable, check_sizes, encode_counter

T = TypeVar("T")
API_VERSION = 710


class _FdbTransaction:
    def __init__(self, tr: Any) -> None:
        self._tr = tr

    def get(self, key: bytes) -> bytes | None:
        value = self._tr.get(key).wait()
        return bytes(value) if value.present() else None

    def set(self, key: bytes, value: bytes) -> None:
        check_sizes(key, value)
        self._tr.set(key, value)

    def clear(self, key: bytes) -> None:
        self._tr.clear(key)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self._tr.clear_range(begin, end)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[tuple[bytes, bytes]]:
        return [(bytes(kv.key), bytes(kv.value)) for kv in self._tr.get_range(begin, end, limit=limit, reverse=reverse)]

    def add(self, key: bytes, delta: int) -> None:
        check_sizes(key)
        self._tr.add(key, encode_counter(delta))


class FdbStore:
    name = "fdb"

    def __init__(self, cluster_file: Path, threads: int = 8) -> None:
        self.cluster_file = cluster_file
        self._db: Any = None
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fdb")

    def _database(self) -> Any:
        if self._db is None:
            try:
                import fdb

                fdb.api_version(API_VERSION)
                self._db = fdb.open(str(self.cluster_file))
            except Exception as error:
                raise StoreUnavailable(f"cannot open FoundationDB via {self.cluster_file}: {error}") from error
        return self._db

    def run_sync(self, fn: Callable[[_FdbTransaction], T]) -> T:
        import fdb

        tr = self._database().create_transaction()
        tr.options.set_timeout(5_000)
        while True:
            try:
                result = fn(_FdbTransaction(tr))
                tr.commit().wait()
                return result
            except fdb.FDBError as error:
                tr.on_error(error).wait()

    async def run(self, fn: Callable[[_FdbTransaction], T]) -> T:
        loop = asyncio.get_running_loop()
        # The caller's context (its trace) travels into the transaction function.
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, context.run, self.run_sync, fn)

    async def check(self) -> None:
        try:
            await self.run(lambda tx: tx.get(b"\x00health"))
        except StoreUnavailable:
            raise
        except Exception as error:
            raise StoreUnavailable(f"FoundationDB not answering: {error}") from error

    def close(self) -> None:
        self._executor.shutdown(wait=False)
