"""The store interface both backends implement, with FoundationDB's semantics and limits."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Protocol, TypeVar

T = TypeVar("T")

KEY_SIZE_LIMIT = 10_000
VALUE_SIZE_LIMIT = 100_000


class StoreUnavailable(Exception):
    """The store cannot be reached or opened; the caller reports not-ready and retries."""


class TransactionConflict(Exception):
    """Another transaction committed something this one read; the retry loop runs it again."""


class Transaction(Protocol):
    """What a transaction function may do. Reads see the transaction's own writes."""

    def get(self, key: bytes) -> bytes | None: ...

    def set(self, key: bytes, value: bytes) -> None: ...

    def clear(self, key: bytes) -> None: ...

    def clear_range(self, begin: bytes, end: bytes) -> None: ...

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[tuple[bytes, bytes]]: ...

    def add(self, key: bytes, delta: int) -> None:
        """Atomic add of a little-endian signed 64-bit integer, as FoundationDB's ``add``."""
        ...


TxFunction = Callable[[Transaction], T]


class Store(Protocol):
    name: str

    async def run(self, fn: Callable[[Transaction], T]) -> T:
        """Run ``fn`` in a transaction off the event loop, retrying it on conflicts."""
        ...

    async def check(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers a read."""
        ...

    def close(self) -> None: ...


def check_sizes(key: bytes, value: bytes | None = None) -> None:
    if len(key) > KEY_SIZE_LIMIT:
        raise ValueError(f"key of {len(key)} bytes exceeds the {KEY_SIZE_LIMIT}-byte limit")
    if value is not None and len(value) > VALUE_SIZE_LIMIT:
        raise ValueError(f"value of {len(value)} bytes exceeds the {VALUE_SIZE_LIMIT}-byte limit")


def encode_counter(value: int) -> bytes:
    """Little-endian int64, wrapping on overflow as FoundationDB's atomic add does."""
    return struct.pack("<q", (value + 2**63) % 2**64 - 2**63)


def decode_counter(raw: bytes | None) -> int:
    if raw is None:
        return 0
    return int(struct.unpack("<q", raw.ljust(8, b"\x00")[:8])[0])
