"""FoundationDB tuple-layer keys, packed faster for the types keys here are made of.

``fdb.tuple.pack`` is pure Python written for every type and Python 2 (``six``, ``value == None``,
an isinstance chain, a versionstamp pass); a session create packs six keys with it, and they cost
more than the create's JSON (README, "Benchmarks"). ``pack`` here writes strings, byte strings and
integers of up to 8 bytes itself, byte for byte as ``fdb.tuple.pack`` does (pinned by
``tests/store/test_tuples.py``), and hands any other tuple to it. ``FastSubspace`` is
``fdb``'s ``Subspace`` with that ``pack``; everything else (unpack, ranges) is the original.
"""

from __future__ import annotations

from typing import Any

import fdb.tuple
from fdb.subspace_impl import Subspace

_INT_ZERO = 0x14
_MAX = (1 << 64) - 1  # beyond 8 bytes fdb uses another code: left to it
_HEADS_POS = [bytes([_INT_ZERO + n]) for n in range(9)]
_HEADS_NEG = [bytes([_INT_ZERO - n]) for n in range(9)]
_LIMITS = [(1 << (n * 8)) - 1 for n in range(9)]


def _int(value: int) -> bytes | None:
    if value == 0:
        return b"\x14"
    magnitude = -value if value < 0 else value
    if magnitude >= _MAX:
        return None
    n = (magnitude.bit_length() + 7) // 8
    if value > 0:
        return _HEADS_POS[n] + value.to_bytes(n, "big")
    return _HEADS_NEG[n] + (_LIMITS[n] + value).to_bytes(n, "big")


def pack(items: tuple[Any, ...], prefix: bytes = b"") -> bytes:
    """``fdb.tuple.pack(items, prefix=prefix)``, the same bytes."""
    parts = [prefix]
    for item in items:
        kind = type(item)
        if kind is str:
            parts.append(b"\x02" + item.encode().replace(b"\x00", b"\x00\xff") + b"\x00")
        elif kind is int:
            encoded = _int(item)
            if encoded is None:
                return fdb.tuple.pack(items, prefix=prefix)  # type: ignore[no-any-return]
            parts.append(encoded)
        elif kind is bytes:
            parts.append(b"\x01" + item.replace(b"\x00", b"\x00\xff") + b"\x00")
        else:  # None, floats, UUIDs, nested tuples, versionstamps, bool, subclasses: as fdb does them
            return fdb.tuple.pack(items, prefix=prefix)  # type: ignore[no-any-return]
    return b"".join(parts)


class FastSubspace(Subspace):  # type: ignore[misc]
    """A ``Subspace`` whose ``pack`` (and its children's) is ``tuples.pack``."""

    def __init__(self, prefixTuple: tuple[Any, ...] = (), rawPrefix: bytes = b"") -> None:  # noqa: N803 (fdb's names)
        self.rawPrefix = pack(prefixTuple, rawPrefix)

    def __getitem__(self, name: Any) -> FastSubspace:
        return FastSubspace((name,), self.rawPrefix)

    def subspace(self, items: tuple[Any, ...]) -> FastSubspace:
        return FastSubspace(items, self.rawPrefix)

    def pack(self, t: tuple[Any, ...] = ()) -> bytes:
        return pack(t, self.rawPrefix)
