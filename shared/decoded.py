"""Objects decoded from stored values, kept by those exact bytes: a hot read decodes once.

A point read on the request path (the caller's user, one session) spends more time validating the
stored JSON into a record and building its reply model than reading it (README, "Benchmarks").
Equal bytes decode to equal objects, so the bytes are the key; a changed record is new bytes and
decodes afresh, and nothing is ever stale. The objects are shared between requests: only read-only
paths use this, and they must not change what they get.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class DecodedCache(Generic[T]):
    """``decode(raw)`` remembered for the last ``size`` distinct values (the oldest goes first)."""

    def __init__(self, decode: Callable[[bytes], T], size: int = 1024) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._decode = decode
        self._size = size
        self._items: dict[bytes, T] = {}

    def __call__(self, raw: bytes) -> T:
        found = self._items.get(raw)
        if found is None:
            found = self._decode(raw)
            self._items[bytes(raw)] = found
            if len(self._items) > self._size:
                del self._items[next(iter(self._items))]
        return found

    def __len__(self) -> int:
        return len(self._items)
