"""The store interface both backends implement, with FoundationDB's semantics and limits."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")

KEY_SIZE_LIMIT = 10_000
VALUE_SIZE_LIMIT = 100_000
TRANSACTION_SIZE_LIMIT = 10_000_000
TRANSACTION_AGE_LIMIT_SECONDS = 5.0
SYSTEM_KEY_PREFIX = b"\xff"


class StoreUnavailable(Exception):
    """The store cannot be reached or opened; the caller reports not-ready and retries."""


class StoreError(Exception):
    """An error with FoundationDB's code and meaning, raised the same way by every backend."""

    code = 4000
    retryable = False


class TransactionConflict(StoreError):
    """``not_committed``: another transaction committed something this one read; the retry loop runs it again."""

    code = 1020
    retryable = True


class TransactionTooOld(StoreError):
    """``transaction_too_old``: the transaction ran longer than 5 s; the retry loop runs it again."""

    code = 1007
    retryable = True


class TransactionTooLarge(StoreError):
    """``transaction_too_large``: more than 10 MB of mutations and conflict ranges; nothing is written."""

    code = 2101


class KeyOutsideLegalRange(StoreError):
    """``key_outside_legal_range``: keys under ``\\xff`` are FoundationDB's system keyspace."""

    code = 2004


class TransactionCancelled(StoreError):
    """``transaction_cancelled``: the transaction object was used after its attempt ended."""

    code = 1025


class TransactionTimedOut(StoreUnavailable, StoreError):
    """``transaction_timed_out``: the retry loop's deadline passed (conflicts, or a stalled writer
    holding the lock). Answered fast and retryable by the caller, never after minutes."""

    code = 1031


def check_key(key: object) -> bytes:
    """FoundationDB's binding refuses anything but bytes, and the system keyspace without an option."""
    if not isinstance(key, bytes):
        raise TypeError(f"keys must be bytes, not {type(key).__name__}")
    if key.startswith(SYSTEM_KEY_PREFIX):
        raise KeyOutsideLegalRange(f"key {key[:16]!r} is in the system keyspace")
    return key


def check_range(begin: object, end: object) -> None:
    check_key(begin)
    if not isinstance(end, bytes):
        raise TypeError(f"keys must be bytes, not {type(end).__name__}")
    if end > SYSTEM_KEY_PREFIX:
        raise KeyOutsideLegalRange(f"range end {end[:16]!r} is past the user keyspace")


def check_value(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"values must be bytes, not {type(value).__name__}")
    return value


class Transaction(Protocol):
    """What a transaction function may do. Reads see the transaction's own writes."""

    def get(self, key: bytes) -> bytes | None: ...

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """``get`` of each key, in order, read together (FoundationDB: the reads in flight at once; the
        embedded store: one query per few hundred keys, and one conflict check for them at commit)."""
        ...

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

    def stats(self) -> dict[str, float]:
        """Figures for operators (the embedded store: its WAL and checkpoints)."""
        ...

    def close(self) -> None: ...


def check_sizes(key: bytes, value: bytes | None = None) -> None:
    check_key(key)
    if value is not None:
        check_value(value)
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
