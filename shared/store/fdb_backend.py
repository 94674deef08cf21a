"""FoundationDB backend through the official client library (selected by ``FDB_CLUSTER_FILE``).

Needs the FoundationDB client shared library (libfdb_c) at run time: the compose and k8s
images install it. Blocking client calls run on a thread pool so the event loop never waits.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from shared.store.base import (
    KeyOutsideLegalRange,
    StoreError,
    StoreUnavailable,
    TransactionCancelled,
    TransactionConflict,
    TransactionTimedOut,
    TransactionTooLarge,
    TransactionTooOld,
    check_range,
    check_sizes,
    encode_counter,
)

T = TypeVar("T")
API_VERSION = 710

# FoundationDB error codes → the shared error types, so callers see the same errors on both backends.
_ERRORS: dict[int, type[StoreError]] = {
    1007: TransactionTooOld,
    1020: TransactionConflict,
    1025: TransactionCancelled,
    1031: TransactionTimedOut,
    2004: KeyOutsideLegalRange,
    2101: TransactionTooLarge,
}


def translate(error: Exception) -> Exception:
    code = getattr(error, "code", None)
    kind = _ERRORS.get(code) if isinstance(code, int) else None
    return kind(str(error)) if kind is not None else error


class _FdbTransaction:
    """The client's transaction behind the shared interface, dead once its attempt ended."""

    def __init__(self, tr: Any) -> None:
        self._tr = tr
        self.dead = False
        self.poisoned: Exception | None = None

    def _live(self) -> Any:
        if self.dead:
            raise TransactionCancelled("the transaction was used after its attempt ended")
        return self._tr

    def _guard(self, error: Exception) -> Exception:
        """A client error seen inside the function fails the commit too, even if the function caught it."""
        self.poisoned = self.poisoned or error
        return translate(error)

    def get(self, key: bytes) -> bytes | None:
        check_sizes(key)
        try:
            value = self._live().get(key).wait()
        except Exception as error:
            if getattr(error, "code", None) is None:
                raise
            raise self._guard(error) from error
        return bytes(value) if value.present() else None

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        for key in keys:
            check_sizes(key)
        try:
            tr = self._live()
            futures = [tr.get(key) for key in keys]  # sent together; waited for together
            values = [future.wait() for future in futures]
        except Exception as error:
            if getattr(error, "code", None) is None:
                raise
            raise self._guard(error) from error
        return [bytes(value) if value.present() else None for value in values]

    def set(self, key: bytes, value: bytes) -> None:
        check_sizes(key, value)
        self._live().set(key, value)

    def clear(self, key: bytes) -> None:
        check_sizes(key)
        self._live().clear(key)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        check_range(begin, end)
        self._live().clear_range(begin, end)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[tuple[bytes, bytes]]:
        check_range(begin, end)
        try:
            rows = self._live().get_range(begin, end, limit=limit, reverse=reverse)
            return [(bytes(kv.key), bytes(kv.value)) for kv in rows]
        except Exception as error:
            if getattr(error, "code", None) is None:
                raise
            raise self._guard(error) from error

    def add(self, key: bytes, delta: int) -> None:
        check_sizes(key)
        self._live().add(key, encode_counter(delta))


class FdbStore:
    name = "fdb"

    def __init__(self, cluster_file: Path, threads: int = 8, deadline_seconds: float = 5.0) -> None:
        self.cluster_file = cluster_file
        self.deadline_seconds = deadline_seconds
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
        # The whole retry loop, as the embedded store's deadline: a stalled cluster fails fast.
        tr.options.set_timeout(int(self.deadline_seconds * 1000))
        while True:
            attempt = _FdbTransaction(tr)
            try:
                try:
                    result = fn(attempt)
                except StoreError as error:
                    if attempt.poisoned is None:
                        raise
                    raise attempt.poisoned from error
                if attempt.poisoned is not None:
                    raise attempt.poisoned
                tr.commit().wait()
                return result
            except fdb.FDBError as error:
                try:
                    tr.on_error(error).wait()
                except fdb.FDBError as final:
                    raise translate(final) from final
            finally:
                attempt.dead = True

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

    def stats(self) -> dict[str, float]:
        return {}  # FoundationDB reports its own health (fdbcli --exec status)

    def close(self) -> None:
        self._executor.shutdown(wait=False)
