"""``shared.store.tuples`` packs keys byte for byte as ``fdb.tuple.pack``: same keys, same order, the
data written before it stays readable."""

from __future__ import annotations

import random
import uuid
from typing import Any

import fdb.tuple
import pytest
from fdb.subspace_impl import Subspace

from shared.store.tuples import FastSubspace, pack

EDGES = [
    0,
    1,
    -1,
    255,
    256,
    -255,
    -256,
    65535,
    -65536,
    2**63 - 1,
    -(2**63),
    2**64 - 2,
    -(2**64 - 2),
    2**64 - 1,  # fdb's 9-byte encoding from here on
    -(2**64 - 1),
    2**64,
    -(2**80),
]
STRINGS = ["", "a", "\x00", "a\x00b\x00", "ünïcødé ✓", str(uuid.uuid4()), "\x00\xff"]


def values(rng: random.Random) -> list[Any]:
    out: list[Any] = [*EDGES, *STRINGS, b"", b"\x00", b"a\x00\xff", True, False, None, 1.5, uuid.uuid4(), (1, "a")]
    for _ in range(2000):
        bits = rng.randrange(0, 70)
        out.append(rng.choice((1, -1)) * rng.getrandbits(bits) if bits else 0)
        out.append("".join(chr(rng.choice((0, rng.randrange(1, 0x2FFF)))) for _ in range(rng.randrange(0, 12))))
        out.append(rng.randbytes(rng.randrange(0, 8)))
    return out


def test_every_value_packs_as_fdb_packs_it() -> None:
    rng = random.Random(7)
    for value in values(rng):
        assert pack((value,)) == fdb.tuple.pack((value,)), value
        assert pack((value,), b"\x15p") == fdb.tuple.pack((value,), prefix=b"\x15p"), value


def test_tuples_of_mixed_values_pack_as_fdb_packs_them() -> None:
    rng = random.Random(11)
    pool = values(rng)
    for _ in range(2000):
        items = tuple(rng.choice(pool) for _ in range(rng.randrange(0, 6)))
        assert pack(items) == fdb.tuple.pack(items), items


@pytest.mark.parametrize("path", [("session",), ("session", "recent"), ("a", 1, -5)])
def test_a_fast_subspace_and_its_children_are_fdbs(path: tuple[Any, ...]) -> None:
    fast, plain = FastSubspace(path), Subspace(path)
    assert fast.key() == plain.key()
    assert fast["child"].key() == plain["child"].key()
    assert fast["child"][3].pack(("x", -7)) == plain["child"][3].pack(("x", -7))
    assert fast.subspace(("y", 2)).pack((b"z",)) == plain.subspace(("y", 2)).pack((b"z",))
    key = fast["child"].pack(("x", 2**40))
    assert fast["child"].unpack(key) == ("x", 2**40)
    assert fast.range().start == plain.range().start and fast.range().stop == plain.range().stop
