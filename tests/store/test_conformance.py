"""One conformance suite for every store backend: FoundationDB's semantics, pinned.

Each test runs against the embedded SQLite store and against FoundationDB; the FoundationDB
run needs ``FDB_CLUSTER_FILE`` and is skipped (never faked) without it. Every test works in its
own subspace, cleared afterwards, so runs against a shared cluster do not see each other.
The multi-process tests start real child processes on the same store and stop them themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import signal
import struct
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import fdb.tuple
import pytest
from fdb.subspace_impl import Subspace

from shared.store.base import (
    KEY_SIZE_LIMIT,
    TRANSACTION_AGE_LIMIT_SECONDS,
    TRANSACTION_SIZE_LIMIT,
    VALUE_SIZE_LIMIT,
    KeyOutsideLegalRange,
    Store,
    StoreUnavailable,
    TransactionCancelled,
    TransactionTimedOut,
    TransactionTooLarge,
    TransactionTooOld,
    decode_counter,
    encode_counter,
)

ROOT = Path(__file__).resolve().parents[2]
CHILD_ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CHILD_TIMEOUT = 60
FDB_SKIP = "FoundationDB conformance needs FDB_CLUSTER_FILE (no FoundationDB server on this machine)"
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def open_store(backend: str, location: Path, *, sync: str = "normal", deadline: float = 5.0) -> Any:
    if backend == "embedded":
        from shared.store.embedded import EmbeddedStore

        return EmbeddedStore(location, sync=sync, deadline_seconds=deadline)
    from shared.store.fdb_backend import FdbStore

    return FdbStore(location, deadline_seconds=deadline)


@pytest.fixture(params=["embedded", "fdb"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "fdb" and not os.environ.get("FDB_CLUSTER_FILE"):
        pytest.skip(FDB_SKIP)
    return str(request.param)


@pytest.fixture
def location(backend: str, tmp_path: Path) -> Path:
    if backend == "embedded":
        return tmp_path / "store.sqlite3"
    return Path(os.environ["FDB_CLUSTER_FILE"])


@pytest.fixture
async def store(backend: str, location: Path) -> AsyncIterator[Store]:
    opened = open_store(backend, location)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
async def space(store: Store) -> AsyncIterator[Subspace]:
    """A subspace no other test (or test run) uses; cleared, raw prefix included, afterwards."""
    sub = Subspace(("test", uuid.uuid4().hex))
    yield sub
    prefix = sub.key()
    await store.run(lambda tx: tx.clear_range(prefix, prefix + b"\xff"))


def everything(space: Subspace) -> tuple[bytes, bytes]:
    return space.key(), space.key() + b"\xff"


async def read_all(store: Store, space: Subspace) -> list[tuple[bytes, bytes]]:
    begin, end = everything(space)
    return await store.run(lambda tx: tx.get_range(begin, end))


async def write(store: Store, pairs: dict[bytes, bytes]) -> None:
    def fn(tx: Any) -> None:
        for key, value in pairs.items():
            tx.set(key, value)

    await store.run(fn)


# --- 1. key ordering -------------------------------------------------------------------------


async def test_tuple_keys_sort_like_foundationdb(store: Store, space: Subspace) -> None:
    tuples = [
        (None,),
        (b"",),
        (b"\x00",),
        (b"\x00\x00",),
        (b"\x00\xff",),
        (b"\x01",),
        (b"a",),
        (b"a\x00b",),
        ("",),
        ("a",),
        ("a\x00",),
        ("ab",),
        ("b",),
        ("é",),
        ("日本",),
        (-(2**70),),
        (-(2**64) + 1,),
        (-300,),
        (-256,),
        (-255,),
        (-2,),
        (-1,),
        (0,),
        (1,),
        (2,),
        (255,),
        (256,),
        (300,),
        (2**63,),
        (2**70,),
        (-1.5,),
        (0.0,),
        (2.5,),
        (False,),
        (True,),
        (uuid.UUID(int=1),),
        (uuid.UUID(int=2**127),),
        ((),),
        ((None,),),
        ((1, "a"),),
        ((1, "b"),),
        ((2,),),
        (("a", (b"x", None)),),
        ("a", 1),
        ("a", 1, None),
        ("a", 2),
        ("a", "b"),
        (1, "a"),
        (1, -1),
        (1, (0,)),
    ]
    packed = [space.pack(t) for t in tuples]
    assert len(set(packed)) == len(packed)
    shuffled = list(zip(packed, tuples, strict=True))
    random.Random(7).shuffle(shuffled)
    # Inserted in random order, across several transactions.
    for start in range(0, len(shuffled), 9):
        chunk = shuffled[start : start + 9]
        await write(store, {key: repr(t).encode() for key, t in chunk})

    rows = await read_all(store, space)

    assert [key for key, _ in rows] == sorted(packed)
    by_tuple_order = sorted(tuples, key=functools.cmp_to_key(fdb.tuple.compare))
    assert [space.unpack(key) for key, _ in rows] == by_tuple_order
    assert [value for _, value in rows] == [repr(t).encode() for t in by_tuple_order]


async def test_integer_keys_sort_numerically_across_sign_and_width(store: Store, space: Subspace) -> None:
    numbers = [-(2**64) + 1, -(2**40), -65536, -257, -256, -1, 0, 1, 255, 256, 65536, 2**40, 2**64 - 1]
    await write(store, {space.pack((n,)): b"" for n in reversed(numbers)})
    rows = await read_all(store, space)
    assert [space.unpack(key)[0] for key, _ in rows] == numbers


# --- 2. range reads --------------------------------------------------------------------------


@pytest.fixture
async def ten(store: Store, space: Subspace) -> list[bytes]:
    """Keys (0,) .. (9,) in the test subspace, value = str(i)."""
    keys = [space.pack((i,)) for i in range(10)]
    await write(store, {key: str(i).encode() for i, key in enumerate(keys)})
    return keys


async def test_get_range_is_begin_inclusive_end_exclusive(store: Store, ten: list[bytes]) -> None:
    rows = await store.run(lambda tx: tx.get_range(ten[2], ten[5]))
    assert rows == [(ten[i], str(i).encode()) for i in (2, 3, 4)]


async def test_get_range_limit_returns_first_keys_in_order(store: Store, space: Subspace, ten: list[bytes]) -> None:
    begin, end = everything(space)
    rows = await store.run(lambda tx: tx.get_range(begin, end, limit=3))
    assert rows == [(ten[i], str(i).encode()) for i in (0, 1, 2)]
    everything_rows = await store.run(lambda tx: tx.get_range(begin, end, limit=0))
    assert len(everything_rows) == 10, "limit=0 means no limit"
    beyond = await store.run(lambda tx: tx.get_range(begin, end, limit=50))
    assert len(beyond) == 10


async def test_get_range_reverse_returns_keys_descending(store: Store, space: Subspace, ten: list[bytes]) -> None:
    begin, end = everything(space)
    rows = await store.run(lambda tx: tx.get_range(begin, end, reverse=True))
    assert [key for key, _ in rows] == list(reversed(ten))


async def test_get_range_reverse_with_limit_returns_last_keys(store: Store, space: Subspace, ten: list[bytes]) -> None:
    begin, end = everything(space)
    rows = await store.run(lambda tx: tx.get_range(begin, end, limit=3, reverse=True))
    assert rows == [(ten[i], str(i).encode()) for i in (9, 8, 7)]
    # Reverse still excludes the end key and includes the begin key.
    bounded = await store.run(lambda tx: tx.get_range(ten[3], ten[6], limit=2, reverse=True))
    assert [key for key, _ in bounded] == [ten[5], ten[4]]
    whole = await store.run(lambda tx: tx.get_range(ten[3], ten[6], reverse=True))
    assert [key for key, _ in whole] == [ten[5], ten[4], ten[3]]


async def test_subspace_range_holds_exactly_the_subspace_keys(store: Store, space: Subspace) -> None:
    inside = [space.pack(("a", 1)), space.pack(("a", "x", None)), space.pack(("a", (1, 2)))]
    outside = [
        space["a"].key(),  # the subspace's own raw prefix: not in Subspace.range(), as in FoundationDB
        space.pack(("ab",)),  # shares the byte prefix "a" but is a different tuple element
        space.pack(("ab", 1)),
        space.pack(("b", 1)),
        space.pack((b"a", 1)),
        space.pack(("A", 1)),
    ]
    await write(store, {key: b"v" for key in inside + outside})
    r = space["a"].range()
    rows = await store.run(lambda tx: tx.get_range(r.start, r.stop))
    assert [key for key, _ in rows] == sorted(inside)
    nested = space["a"].range(("x",))
    rows = await store.run(lambda tx: tx.get_range(nested.start, nested.stop))
    assert [key for key, _ in rows] == [space.pack(("a", "x", None))]


async def test_empty_and_degenerate_ranges_return_nothing(store: Store, space: Subspace, ten: list[bytes]) -> None:
    empty = space["nothing here"].range()
    assert await store.run(lambda tx: tx.get_range(empty.start, empty.stop)) == []
    assert await store.run(lambda tx: tx.get_range(empty.start, empty.stop, reverse=True, limit=1)) == []
    # begin == end is empty even when a key equals begin.
    assert await store.run(lambda tx: tx.get_range(ten[4], ten[4])) == []
    assert await store.run(lambda tx: tx.get_range(ten[4], ten[4], reverse=True)) == []
    # A range just wide enough for one key holds only that key.
    assert await store.run(lambda tx: tx.get_range(ten[4], ten[4] + b"\x00")) == [(ten[4], b"4")]


# --- 3. read-your-writes, clear, clear_range --------------------------------------------------


async def test_transaction_reads_its_own_writes(store: Store, space: Subspace, ten: list[bytes]) -> None:
    new_key = space.pack((4, "between"))

    def fn(tx: Any) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        tx.set(new_key, b"new")
        seen["get_new"] = tx.get(new_key)
        tx.set(ten[1], b"overwritten")
        seen["get_overwritten"] = tx.get(ten[1])
        tx.clear(ten[2])
        seen["get_cleared"] = tx.get(ten[2])
        tx.clear_range(ten[6], ten[8])
        seen["range"] = [key for key, _ in tx.get_range(ten[0], ten[9] + b"\x00")]
        seen["range_reverse_2"] = [key for key, _ in tx.get_range(ten[3], ten[6], reverse=True, limit=2)]
        tx.set(ten[2], b"back")
        seen["get_set_after_clear"] = tx.get(ten[2])
        tx.add(space.pack(("counter",)), 5)
        tx.add(space.pack(("counter",)), -2)
        seen["counter"] = decode_counter(tx.get(space.pack(("counter",))))
        return seen

    seen = await store.run(fn)

    assert seen["get_new"] == b"new"
    assert seen["get_overwritten"] == b"overwritten"
    assert seen["get_cleared"] is None
    assert seen["range"] == [ten[0], ten[1], ten[3], ten[4], new_key, ten[5], ten[8], ten[9]]
    assert seen["range_reverse_2"] == [ten[5], new_key]
    assert seen["get_set_after_clear"] == b"back"
    assert seen["counter"] == 3
    # And all of it committed.
    rows = dict(await read_all(store, space))
    assert rows[new_key] == b"new"
    assert rows[ten[1]] == b"overwritten"
    assert rows[ten[2]] == b"back"
    assert ten[6] not in rows and ten[7] not in rows
    assert decode_counter(rows[space.pack(("counter",))]) == 3


async def test_clear_removes_one_key_and_missing_keys_read_none(store: Store, ten: list[bytes]) -> None:
    await store.run(lambda tx: tx.clear(ten[3]))
    assert await store.run(lambda tx: tx.get(ten[3])) is None
    assert await store.run(lambda tx: tx.get(ten[4])) == b"4"
    # Clearing a key that does not exist is not an error.
    await store.run(lambda tx: tx.clear(ten[3]))
    assert await store.run(lambda tx: tx.get(ten[3] + b"\x00")) is None


async def test_clear_range_removes_the_half_open_range_only(store: Store, space: Subspace, ten: list[bytes]) -> None:
    await store.run(lambda tx: tx.clear_range(ten[2], ten[5]))
    keys = [key for key, _ in await read_all(store, space)]
    assert keys == [ten[i] for i in (0, 1, 5, 6, 7, 8, 9)]
    await store.run(lambda tx: tx.clear_range(ten[7], ten[7]))  # empty range: clears nothing
    assert len(await read_all(store, space)) == 7
    r = space.range()
    await store.run(lambda tx: tx.clear_range(r.start, r.stop))
    assert await read_all(store, space) == []


async def test_values_round_trip_byte_exact(store: Store, space: Subspace) -> None:
    values = [b"", b"\x00", b"\x00\xff\x00", bytes(range(256)), "日本".encode()]
    keys = [space.pack(("v", i)) for i in range(len(values))]
    await write(store, dict(zip(keys, values, strict=True)))
    got = await store.run(lambda tx: [tx.get(key) for key in keys])
    assert got == values
    assert all(type(value) is bytes for value in got)


# --- 4. atomic add -----------------------------------------------------------------------------


async def test_add_on_missing_key_starts_at_zero(store: Store, space: Subspace) -> None:
    key = space.pack(("counter",))
    await store.run(lambda tx: tx.add(key, 7))
    raw = await store.run(lambda tx: tx.get(key))
    assert raw == struct.pack("<q", 7)
    negative = space.pack(("negative",))
    await store.run(lambda tx: tx.add(negative, -3))
    assert await store.run(lambda tx: tx.get(negative)) == struct.pack("<q", -3)


async def test_add_positive_and_negative_deltas(store: Store, space: Subspace) -> None:
    key = space.pack(("counter",))
    for delta in (10, 5, -20, 1_000_000_000_000, -1_000_000_000_000):
        await store.run(lambda tx, d=delta: tx.add(key, d))
    raw = await store.run(lambda tx: tx.get(key))
    assert raw == struct.pack("<q", -5)
    assert decode_counter(raw) == -5


async def test_add_zero_extends_short_values_and_truncates_long_ones(store: Store, space: Subspace) -> None:
    short, long = space.pack(("short",)), space.pack(("long",))
    await write(store, {short: b"\x05", long: struct.pack("<q", 5) + b"\xaa\xbb"})
    await store.run(lambda tx: (tx.add(short, 1), tx.add(long, 1)))
    assert await store.run(lambda tx: tx.get(short)) == struct.pack("<q", 6)
    assert await store.run(lambda tx: tx.get(long)) == struct.pack("<q", 6)


async def test_add_wraps_around_on_int64_overflow_like_foundationdb(store: Store, space: Subspace) -> None:
    high, low = space.pack(("high",)), space.pack(("low",))
    await write(store, {high: encode_counter(INT64_MAX), low: encode_counter(INT64_MIN)})
    await store.run(lambda tx: (tx.add(high, 1), tx.add(low, -1)))
    assert decode_counter(await store.run(lambda tx: tx.get(high))) == INT64_MIN
    assert decode_counter(await store.run(lambda tx: tx.get(low))) == INT64_MAX


async def test_concurrent_adds_sum_exactly(store: Store, space: Subspace) -> None:
    key = space.pack(("counter",))
    deltas = [i % 7 - 2 for i in range(200)]
    await asyncio.gather(*(store.run(lambda tx, d=d: tx.add(key, d)) for d in deltas))
    assert decode_counter(await store.run(lambda tx: tx.get(key))) == sum(deltas)


async def test_concurrent_read_modify_writes_in_one_process_lose_no_update(store: Store, space: Subspace) -> None:
    key = space.pack(("counter",))

    def increment(tx: Any) -> None:
        tx.set(key, str(int(tx.get(key) or b"0") + 1).encode())

    await asyncio.gather(*(store.run(increment) for _ in range(100)))
    assert await store.run(lambda tx: tx.get(key)) == b"100"


def test_decode_counter_reads_little_endian_int64() -> None:
    assert decode_counter(None) == 0
    assert decode_counter(b"") == 0
    assert decode_counter(b"\x01") == 1
    assert decode_counter(b"\x00\x01") == 256
    assert decode_counter(b"\xff" * 8) == -1
    assert decode_counter(struct.pack("<q", INT64_MIN)) == INT64_MIN
    assert decode_counter(struct.pack("<q", 42) + b"\xff\xff") == 42
    for value in (0, 1, -1, 123456789, INT64_MAX, INT64_MIN):
        assert encode_counter(value) == struct.pack("<q", value)
        assert decode_counter(encode_counter(value)) == value


# --- 5. rollback on exception ------------------------------------------------------------------


class Boom(Exception):
    pass


async def test_exception_in_transaction_rolls_back_and_propagates(
    store: Store, space: Subspace, ten: list[bytes]
) -> None:
    before = await read_all(store, space)
    calls = []

    def fn(tx: Any) -> None:
        calls.append(1)
        tx.set(space.pack(("new",)), b"x")
        tx.set(ten[0], b"changed")
        tx.clear(ten[1])
        tx.clear_range(ten[5], ten[9])
        tx.add(space.pack(("counter",)), 1)
        assert tx.get(ten[0]) == b"changed"
        raise Boom("application error")

    with pytest.raises(Boom, match="application error"):
        await store.run(fn)

    assert calls == [1], "an application exception is not a conflict: no retry"
    assert await read_all(store, space) == before
    # The store is still usable afterwards.
    await store.run(lambda tx: tx.set(ten[0], b"after"))
    assert await store.run(lambda tx: tx.get(ten[0])) == b"after"


# --- 6. size limits ----------------------------------------------------------------------------


def key_of_size(space: Subspace, size: int) -> bytes:
    key = space.pack((b"k",))
    return key + b"k" * (size - len(key))


async def test_key_and_value_at_the_limit_are_accepted(store: Store, space: Subspace) -> None:
    key = key_of_size(space, KEY_SIZE_LIMIT)
    value = b"v" * VALUE_SIZE_LIMIT
    assert len(key) == KEY_SIZE_LIMIT
    await store.run(lambda tx: tx.set(key, value))
    assert await store.run(lambda tx: tx.get(key)) == value


async def test_oversized_key_or_value_raises_value_error_and_writes_nothing(store: Store, space: Subspace) -> None:
    big_key = key_of_size(space, KEY_SIZE_LIMIT + 1)
    small_key = space.pack(("small",))

    def set_big_key(tx: Any) -> None:
        tx.set(small_key, b"must not stay")
        tx.set(big_key, b"v")

    with pytest.raises(ValueError, match="key"):
        await store.run(set_big_key)
    with pytest.raises(ValueError, match="value"):
        await store.run(lambda tx: tx.set(small_key, b"v" * (VALUE_SIZE_LIMIT + 1)))
    assert await read_all(store, space) == []


async def test_add_on_oversized_key_raises_value_error(store: Store, space: Subspace) -> None:
    big_key = key_of_size(space, KEY_SIZE_LIMIT + 1)
    with pytest.raises(ValueError, match="key"):
        await store.run(lambda tx: tx.add(big_key, 1))
    assert await read_all(store, space) == []


# --- 7. isolation and retries ------------------------------------------------------------------


async def test_reads_in_a_transaction_see_one_snapshot_and_conflicts_retry(
    store: Store, space: Subspace, backend: str, location: Path
) -> None:
    """A write committed by another connection mid-transaction is not seen by the running
    transaction; because it read the key, its commit conflicts and it runs again on fresh data."""
    a, b = space.pack(("a",)), space.pack(("b",))
    await store.run(lambda tx: tx.set(a, b"0"))
    other = open_store(backend, location)
    attempts: list[tuple[bytes | None, bytes | None]] = []

    def fn(tx: Any) -> None:
        first = tx.get(a)
        if not attempts:
            other.run_sync(lambda otx: otx.set(a, b"1"))
        second = tx.get(a)
        attempts.append((first, second))
        tx.set(b, b"saw " + (second or b"nothing"))

    try:
        await store.run(fn)
    finally:
        other.close()

    assert attempts == [(b"0", b"0"), (b"1", b"1")]
    assert await store.run(lambda tx: tx.get(b)) == b"saw 1"


async def test_get_many_reads_each_key_in_order_with_its_own_writes(
    store: Store, space: Subspace, ten: list[bytes]
) -> None:
    missing, new = space.pack(("missing",)), space.pack(("new",))

    def fn(tx: Any) -> list[bytes | None]:
        tx.set(new, b"new")
        tx.set(ten[1], b"overwritten")
        tx.clear(ten[2])
        tx.clear_range(ten[6], ten[8])
        return tx.get_many([ten[0], missing, new, ten[1], ten[2], ten[7], ten[8], ten[0]])  # type: ignore[no-any-return]

    values = await store.run(fn)
    assert values == [b"0", None, b"new", b"overwritten", None, None, b"8", b"0"]
    assert await store.run(lambda tx: tx.get_many([])) == []


async def test_a_key_read_by_get_many_and_changed_meanwhile_makes_the_transaction_run_again(
    store: Store, space: Subspace, backend: str, location: Path
) -> None:
    keys = [space.pack(("k", i)) for i in range(600)]  # more than one query's worth on the embedded store
    await store.run(lambda tx: [tx.set(key, b"0") for key in keys] and None)
    other = open_store(backend, location)
    attempts: list[bytes | None] = []
    out = space.pack(("out",))

    def fn(tx: Any) -> None:
        values = tx.get_many(keys)
        if not attempts:
            other.run_sync(lambda otx: otx.set(keys[550], b"1"))
        attempts.append(values[550])
        tx.set(out, values[550] or b"")

    try:
        await store.run(fn)
    finally:
        other.close()
    assert attempts == [b"0", b"1"]
    assert await store.run(lambda tx: tx.get(out)) == b"1"


CHILD_PRELUDE = """
import json, sys, time
from pathlib import Path

cfg = json.loads(sys.argv[1])
if cfg["backend"] == "embedded":
    from shared.store.embedded import EmbeddedStore
    store = EmbeddedStore(Path(cfg["location"]), sync=cfg.get("sync", "normal"))
else:
    from shared.store.fdb_backend import FdbStore
    store = FdbStore(Path(cfg["location"]))

def wait_for_go():
    print("ready", flush=True)
    word, start_at = sys.stdin.readline().split()
    assert word == "go"
    time.sleep(max(0.0, float(start_at) - time.monotonic()))
"""

INCREMENT_CHILD = """
key = bytes.fromhex(cfg["key"])
attempts = 0

def increment(tx):
    global attempts
    attempts += 1
    raw = tx.get(key)
    time.sleep(cfg["pause"])  # widen the window between the read and the write
    tx.set(key, str(int(raw or b"0") + 1).encode())

wait_for_go()
for _ in range(cfg["n"]):
    store.run_sync(increment)
store.close()
print(json.dumps({"attempts": attempts}), flush=True)
"""

WITHDRAW_CHILD = """
prefix = bytes.fromhex(cfg["prefix"])
mine = cfg["account"]
accounts = ("checking", "savings")
import fdb.tuple
attempts = 0

def withdraw(round_):
    keys = {name: fdb.tuple.pack((round_, name), prefix=prefix) for name in accounts}

    def fn(tx):
        global attempts
        attempts += 1
        balances = {name: int(tx.get(key)) for name, key in keys.items()}
        time.sleep(cfg["pause"])  # widen the window between the check and the withdrawal
        if sum(balances.values()) >= cfg["amount"]:
            # Reads both accounts, writes only its own: the write-skew shape.
            tx.set(keys[mine], str(balances[mine] - cfg["amount"]).encode())
            return True
        return False

    return fn

wait_for_go()
granted = [store.run_sync(withdraw(r)) for r in range(cfg["rounds"])]
store.close()
print(json.dumps({"granted": granted, "attempts": attempts}), flush=True)
"""

KILL_CHILD = """
prefix = bytes.fromhex(cfg["prefix"])
import fdb.tuple
for i in range(cfg["k"]):
    store.run_sync(lambda tx, i=i: tx.set(fdb.tuple.pack(("committed", i), prefix=prefix), b"value %d" % i))

def never_committed(tx):
    tx.set(fdb.tuple.pack(("uncommitted",), prefix=prefix), b"must not survive")
    tx.set(fdb.tuple.pack(("committed", 0), prefix=prefix), b"overwritten, must not survive")
    print("committed", flush=True)
    time.sleep(600)

if cfg.get("open_transaction"):
    store.run_sync(never_committed)
print("committed", flush=True)
time.sleep(600)
"""


class Child:
    """A Python child process on the same store; killed and reaped by ``children`` in any case."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self) -> str:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), CHILD_TIMEOUT)
        if not raw:
            await self.fail("exited early")
        return raw.decode().strip()

    async def go(self, start_at: float) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go %f\n" % start_at)
        await self.process.stdin.drain()

    async def result(self) -> dict[str, Any]:
        stdout, stderr = await asyncio.wait_for(self.process.communicate(), CHILD_TIMEOUT)
        if self.process.returncode != 0:
            raise AssertionError(f"child failed ({self.process.returncode}): {stderr.decode()}")
        return dict(json.loads(stdout.decode().strip().splitlines()[-1]))

    async def fail(self, what: str) -> None:
        assert self.process.stderr is not None
        self.process.kill()
        stderr = await asyncio.wait_for(self.process.stderr.read(), CHILD_TIMEOUT)
        raise AssertionError(f"child {what}: {stderr.decode()}")


@contextlib.asynccontextmanager
async def children(code: str, configs: list[dict[str, Any]]) -> AsyncIterator[list[Child]]:
    started: list[Child] = []
    try:
        for cfg in configs:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CHILD_PRELUDE + code,
                json.dumps(cfg),
                cwd=ROOT,
                env=CHILD_ENV,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            started.append(Child(process))
        yield started
    finally:
        for child in started:
            if child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
            await child.process.wait()


async def start_together(started: list[Child]) -> None:
    """Wait until every child is ready, then have them all start at the same (monotonic) instant."""
    for child in started:
        assert await child.line() == "ready"
    start_at = time.monotonic() + 0.2
    for child in started:
        await child.go(start_at)


async def test_read_modify_writes_from_two_processes_lose_no_update(
    store: Store, space: Subspace, backend: str, location: Path
) -> None:
    n = 200
    key = space.pack(("counter",))
    await store.run(lambda tx: tx.set(key, b"0"))  # the store exists before the children open it
    cfg = {"backend": backend, "location": str(location), "key": key.hex(), "n": n, "pause": 0.0005}
    async with children(INCREMENT_CHILD, [cfg, cfg]) as started:
        await start_together(started)
        results = [await child.result() for child in started]

    final = await store.run(lambda tx: tx.get(key))
    assert final == str(2 * n).encode(), f"lost updates: {final!r} after {results}"
    attempts = sum(result["attempts"] for result in results)
    assert attempts > 2 * n, "the two processes never conflicted: the test did not exercise isolation"


TRANSFER_CHILD = """
import random
prefix = bytes.fromhex(cfg["prefix"])
rng = random.Random(cfg["seed"])
accounts = cfg["accounts"]
attempts = 0

def account(i):
    return prefix + bytes([i])

def transfer(tx):
    global attempts
    attempts += 1
    a, b = rng.sample(range(accounts), 2)
    balance = int(tx.get(account(a)))
    amount = rng.randrange(1, 10)
    if balance >= amount:
        tx.set(account(a), b"%d" % (balance - amount))
        tx.set(account(b), b"%d" % (int(tx.get(account(b))) + amount))

wait_for_go()
for _ in range(cfg["n"]):
    store.run_sync(transfer)
store.close()
print(json.dumps({"attempts": attempts}), flush=True)
"""


async def test_transfers_from_four_processes_keep_the_total_in_every_range_snapshot(
    store: Store, space: Subspace, backend: str, location: Path
) -> None:
    """The bank invariant: money moves between accounts, never appears or vanishes, and every range
    read taken while four processes transfer sees a consistent total."""
    accounts, initial, n = 20, 1_000, 300
    prefix = space.key()
    await store.run(lambda tx: [tx.set(prefix + bytes([i]), b"%d" % initial) for i in range(accounts)])
    total = accounts * initial
    begin, end = prefix, prefix + b"\xff"
    configs = [
        {"backend": backend, "location": str(location), "prefix": prefix.hex(), "accounts": accounts, "n": n, "seed": i}
        for i in range(4)
    ]
    audits: list[int] = []
    async with children(TRANSFER_CHILD, configs) as started:
        await start_together(started)
        results_task = asyncio.gather(*(child.result() for child in started))
        while not results_task.done():
            rows = await store.run(lambda tx: tx.get_range(begin, end))
            audits.append(sum(int(value) for _, value in rows))
            await asyncio.sleep(0.002)
        results = await results_task
    assert audits, "no audit ran while the transfers did"
    assert set(audits) == {total}, f"inconsistent snapshots: {sorted(set(audits) - {total})[:5]}"
    rows = await store.run(lambda tx: tx.get_range(begin, end))
    assert sum(int(value) for _, value in rows) == total
    assert all(int(value) >= 0 for _, value in rows)
    assert sum(result["attempts"] for result in results) > 4 * n, "the processes never conflicted"


async def test_withdrawals_from_two_processes_never_overdraw(
    store: Store, space: Subspace, backend: str, location: Path
) -> None:
    """Write skew: each process reads both accounts and withdraws from its own when the total
    covers it. Snapshot isolation without read conflicts would let both withdraw the last unit."""
    rounds, amount = 150, 1
    prefix = space.key()

    def seed(tx: Any) -> None:
        for r in range(rounds):
            tx.set(fdb.tuple.pack((r, "checking"), prefix=prefix), b"1")
            tx.set(fdb.tuple.pack((r, "savings"), prefix=prefix), b"0")

    await store.run(seed)
    configs = [
        {
            "backend": backend,
            "location": str(location),
            "prefix": prefix.hex(),
            "account": account,
            "rounds": rounds,
            "amount": amount,
            "pause": 0.0005,
        }
        for account in ("checking", "savings")
    ]
    async with children(WITHDRAW_CHILD, configs) as started:
        await start_together(started)
        results = [await child.result() for child in started]

    def totals(tx: Any) -> list[int]:
        return [
            int(tx.get(fdb.tuple.pack((r, "checking"), prefix=prefix)))
            + int(tx.get(fdb.tuple.pack((r, "savings"), prefix=prefix)))
            for r in range(rounds)
        ]

    balances = await store.run(totals)
    overdrawn = [r for r, total in enumerate(balances) if total < 0]
    assert overdrawn == [], f"rounds overdrawn by concurrent withdrawals: {overdrawn}"
    assert balances == [0] * rounds
    granted_per_round = [a + b for a, b in zip(results[0]["granted"], results[1]["granted"], strict=True)]
    assert granted_per_round == [1] * rounds, "each round grants exactly one withdrawal"
    attempts = sum(result["attempts"] for result in results)
    assert attempts > 2 * rounds, "the two processes never conflicted: the test did not exercise isolation"


# --- 8. durability across kill -9 --------------------------------------------------------------


async def kill_after_commits(
    backend: str, location: Path, space: Subspace, *, k: int, sync: str = "normal", open_transaction: bool = False
) -> None:
    cfg = {
        "backend": backend,
        "location": str(location),
        "sync": sync,
        "prefix": space.key().hex(),
        "k": k,
        "open_transaction": open_transaction,
    }
    async with children(KILL_CHILD, [cfg]) as (child,):
        assert await child.line() == "committed"
        os.kill(child.process.pid, signal.SIGKILL)
        assert await asyncio.wait_for(child.process.wait(), CHILD_TIMEOUT) == -signal.SIGKILL


async def assert_committed_survived(backend: str, location: Path, space: Subspace, k: int) -> None:
    reopened = open_store(backend, location)
    try:
        await reopened.check()
        rows = dict(await read_all(reopened, space))
    finally:
        reopened.close()
    expected = {space.pack(("committed", i)): b"value %d" % i for i in range(k)}
    assert rows == expected


async def test_committed_transactions_survive_kill_9(backend: str, location: Path, space: Subspace) -> None:
    k = 50
    await kill_after_commits(backend, location, space, k=k)
    await assert_committed_survived(backend, location, space, k)


async def test_transaction_open_at_kill_9_leaves_no_trace(backend: str, location: Path, space: Subspace) -> None:
    k = 20
    await kill_after_commits(backend, location, space, k=k, open_transaction=True)
    await assert_committed_survived(backend, location, space, k)


async def test_committed_transactions_survive_kill_9_with_sync_full(
    backend: str, location: Path, space: Subspace
) -> None:
    if backend != "embedded":
        pytest.skip("sync='full' is an embedded-store setting")
    k = 50
    await kill_after_commits(backend, location, space, k=k, sync="full")
    await assert_committed_survived(backend, location, space, k)


# --- 9. availability ---------------------------------------------------------------------------


async def test_check_passes_on_a_usable_store(store: Store) -> None:
    await store.check()


async def test_check_raises_store_unavailable_on_unusable_location(backend: str, tmp_path: Path) -> None:
    regular_file = tmp_path / "a-regular-file"
    regular_file.write_text("not a directory")
    unusable = regular_file / ("store.sqlite3" if backend == "embedded" else "fdb.cluster")
    broken = open_store(backend, unusable)
    try:
        with pytest.raises(StoreUnavailable):
            await broken.check()
        with pytest.raises(StoreUnavailable):  # still unavailable on a second try, not a crash
            await broken.check()
    finally:
        broken.close()


async def test_opening_waits_while_another_connection_initialises_the_store(backend: str, location: Path) -> None:
    if backend != "embedded":
        pytest.skip("creating the store file is an embedded-store concern")
    # Another connection is creating the store: the new file, not yet in WAL mode, is write-locked.
    # (Through apsw, the store's own SQLite: two SQLite libraries in one process do not see each
    # other's POSIX locks, so mixing them on one file is unsafe.)
    import apsw

    creator = apsw.Connection(str(location))
    creator.execute("BEGIN IMMEDIATE")
    creator.execute("CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
    release = threading.Timer(0.3, lambda: creator.execute("COMMIT"))
    release.start()
    opened = open_store(backend, location)
    try:
        await opened.run(lambda tx: tx.set(b"key", b"value"))  # must wait out the lock (busy_timeout)
        assert await opened.run(lambda tx: tx.get(b"key")) == b"value"
    finally:
        release.join()
        opened.close()
        creator.close()


async def test_concurrent_first_transactions_on_a_fresh_store_all_succeed(backend: str, tmp_path: Path) -> None:
    """A service's first requests arrive together: each executor thread opens its connection
    on the fresh store file at the same moment."""
    if backend != "embedded":
        pytest.skip("creating the store file is an embedded-store concern")
    failures: list[str] = []
    for i in range(100):
        fresh = open_store(backend, tmp_path / f"fresh-{i}.sqlite3")
        try:
            results = await asyncio.gather(
                *(fresh.run(lambda tx, j=j: tx.set(b"key %d" % j, b"v")) for j in range(8)),
                return_exceptions=True,
            )
        finally:
            fresh.close()
        failures += [f"fresh-{i}: {result!r}" for result in results if isinstance(result, BaseException)]
    assert failures == []


def test_embedded_store_rejects_unknown_sync_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sync"):
        open_store("embedded", tmp_path / "store.sqlite3", sync="sometimes")


# --- 11. FoundationDB's contract, enforced -----------------------------------------------------


async def test_a_swallowed_error_does_not_commit_half_a_transfer(
    store: Store, space: Subspace, backend: str, location: Path
) -> None:
    """Another connection spends the money while the transfer runs; the transfer swallows every
    error around its writes. It must still run again on fresh data, never commit half of itself."""
    checking, savings = space.pack(("checking",)), space.pack(("savings",))
    await write(store, {checking: b"100", savings: b"0"})
    other = open_store(backend, location)
    seen: list[int] = []

    def transfer(tx: Any) -> None:
        balance = int(tx.get(checking))
        if not seen:
            other.run_sync(lambda otx: otx.set(checking, b"0"))
        seen.append(balance)
        if balance < 100:
            return
        with contextlib.suppress(Exception):
            tx.set(checking, str(balance - 100).encode())
        with contextlib.suppress(Exception):
            tx.set(savings, str(int(tx.get(savings)) + 100).encode())

    try:
        await store.run(transfer)
    finally:
        other.close()
    assert seen == [100, 0]
    assert await store.run(lambda tx: (tx.get(checking), tx.get(savings))) == (b"0", b"0")


async def test_a_swallowed_store_error_fails_the_commit(store: Store, space: Subspace) -> None:
    key = space.pack(("k",))

    def fn(tx: Any) -> None:
        with contextlib.suppress(KeyOutsideLegalRange):
            tx.get(b"\xff/system")
        tx.set(key, b"must not commit")

    with pytest.raises(KeyOutsideLegalRange):
        await store.run(fn)
    assert await read_all(store, space) == []


async def test_a_transaction_older_than_five_seconds_runs_again(space: Subspace, backend: str, location: Path) -> None:
    # The retry loop's deadline must leave room for a second attempt after the first grew too old.
    store = open_store(backend, location, deadline=12.0)
    key = space.pack(("slow",))
    too_old: list[int] = []
    attempts: list[int] = []

    def fn(tx: Any) -> None:
        attempts.append(1)
        tx.get(key)
        if len(attempts) == 1:
            time.sleep(TRANSACTION_AGE_LIMIT_SECONDS + 0.2)
            try:
                tx.get(key)
            except TransactionTooOld:
                too_old.append(1)  # swallowed: the commit must fail anyway
        tx.set(key, b"attempt %d" % len(attempts))

    try:
        await store.run(fn)
        assert too_old == [1]
        assert len(attempts) == 2
        assert await store.run(lambda tx: tx.get(key)) == b"attempt 2"
    finally:
        store.close()


async def test_a_transaction_over_ten_megabytes_is_refused_whole(store: Store, space: Subspace) -> None:
    value = b"v" * VALUE_SIZE_LIMIT

    def big(tx: Any) -> None:
        for i in range(TRANSACTION_SIZE_LIMIT // VALUE_SIZE_LIMIT + 2):
            tx.set(space.pack(("big", i)), value)

    with pytest.raises(TransactionTooLarge):
        await store.run(big)

    def many(tx: Any) -> None:
        for i in range(250_000):
            tx.set(space.pack(("many", i)), b"x" * 20)

    with pytest.raises(TransactionTooLarge):
        await store.run(many)
    assert await read_all(store, space) == []


@pytest.mark.parametrize(
    "operation",
    [
        lambda tx: tx.set("text key", b"v"),
        lambda tx: tx.set(b"k", "text value"),
        lambda tx: tx.get("text key"),
        lambda tx: tx.clear("text key"),
        lambda tx: tx.get_range("a", b"b"),
        lambda tx: tx.add("text key", 1),
    ],
)
async def test_keys_and_values_must_be_bytes(store: Store, space: Subspace, operation: Any) -> None:
    with pytest.raises(TypeError):
        await store.run(operation)
    assert await read_all(store, space) == []


@pytest.mark.parametrize(
    "operation",
    [
        lambda tx: tx.set(b"\xff/conf", b"v"),
        lambda tx: tx.get(b"\xffkey"),
        lambda tx: tx.clear(b"\xff"),
        lambda tx: tx.add(b"\xff\x02counter", 1),
        lambda tx: tx.get_range(b"\xff", b"\xff\xff"),
        lambda tx: tx.clear_range(b"", b"\xff\x01"),
    ],
)
async def test_the_system_keyspace_is_refused(store: Store, operation: Any) -> None:
    with pytest.raises(KeyOutsideLegalRange):
        await store.run(operation)


async def test_a_transaction_object_is_dead_once_its_attempt_ended(store: Store, space: Subspace) -> None:
    leaked: list[Any] = []
    key = space.pack(("leaked",))
    await store.run(leaked.append)
    for use in (lambda: leaked[0].set(key, b"v"), lambda: leaked[0].get(key), lambda: leaked[0].add(key, 1)):
        with pytest.raises(TransactionCancelled):
            use()
    assert await read_all(store, space) == []


async def test_adds_from_leaked_objects_on_two_threads_never_land(store: Store, space: Subspace) -> None:
    leaked: list[Any] = []
    key = space.pack(("counter",))
    await store.run(leaked.append)
    await store.run(leaked.append)

    def hammer(tx: Any) -> int:
        refused = 0
        for _ in range(1_000):
            try:
                tx.add(key, 1)
            except TransactionCancelled:
                refused += 1
        return refused

    refused = await asyncio.gather(*(asyncio.to_thread(hammer, tx) for tx in leaked))
    assert refused == [1_000, 1_000]
    assert await store.run(lambda tx: tx.get(key)) is None


# --- 12. liveness and a bounded WAL (embedded: real processes on one service's file) -----------

STALL_SECONDS = 20.0
STALLER = """
import apsw, os, signal, sys
conn = apsw.Connection(sys.argv[1])
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (b"stalled", b"writer"))
print("holding the write lock", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
conn.execute("COMMIT")
"""


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def test_a_stalled_writer_costs_other_writers_the_deadline_and_nothing_else(tmp_path: Path) -> None:
    from shared.store.embedded import EmbeddedStore

    stalled_path, other_path = tmp_path / "session.sqlite3", tmp_path / "audit.sqlite3"
    same = EmbeddedStore(stalled_path, deadline_seconds=1.0)
    other_service = EmbeddedStore(other_path, deadline_seconds=1.0)
    await same.run(lambda tx: tx.set(b"existing", b"row"))
    staller = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STALLER, str(stalled_path), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert staller.stdout is not None
        assert (await asyncio.wait_for(staller.stdout.readline(), 10)).strip() == b"holding the write lock"
        reads: list[float] = []
        other_writes: list[float] = []
        failures: list[float] = []
        stop_at = time.monotonic() + STALL_SECONDS
        while time.monotonic() < stop_at:
            started = time.monotonic()
            assert await same.run(lambda tx: tx.get(b"existing")) == b"row"
            reads.append(time.monotonic() - started)
            started = time.monotonic()
            await other_service.run(lambda tx: tx.set(b"k", b"%f" % time.time()))
            other_writes.append(time.monotonic() - started)
            if len(failures) < 3:
                started = time.monotonic()
                with pytest.raises(TransactionTimedOut):
                    await same.run(lambda tx: tx.set(b"blocked", b"write"))
                failures.append(time.monotonic() - started)
            await asyncio.sleep(0.01)
        assert p99(reads) < 0.05, f"reads p99 {p99(reads) * 1000:.1f} ms"
        assert p99(other_writes) < 0.05, f"other service's writes p99 {p99(other_writes) * 1000:.1f} ms"
        assert max(failures) < 1.0 + 0.5, failures
        staller.kill()  # the stalled writer dies: its lock goes with it
        await staller.wait()
        await same.run(lambda tx: tx.set(b"after", b"recovered"))
        assert await same.run(lambda tx: tx.get(b"stalled")) is None
    finally:
        if staller.returncode is None:
            staller.kill()
            await staller.wait()
        same.close()
        other_service.close()


WAL_SECONDS = float(os.environ.get("CODITECT_WAL_TEST_SECONDS", "60"))
WAL_BOUND = 64 * 1024 * 1024
WAL_WRITER = """
import os, random, sys, time
from pathlib import Path
from shared.store.embedded import EmbeddedStore

store = EmbeddedStore(Path(sys.argv[1]))
stop_at = time.monotonic() + float(sys.argv[2])
value = os.urandom(80_000)
commits = 0
while time.monotonic() < stop_at:
    key = b"wal/%d/%d" % (os.getpid(), random.randrange(100))
    store.run_sync(lambda tx: tx.set(key, value))
    commits += 1
store.close()
print(commits, flush=True)
"""


async def test_the_wal_stays_bounded_under_four_sustained_writers(tmp_path: Path) -> None:
    from shared.store.embedded import EmbeddedStore

    path = tmp_path / "file_event.sqlite3"
    EmbeddedStore(path).close()
    wal = path.with_name(path.name + "-wal")
    logs = [(tmp_path / f"writer-{i}.log").open("wb") for i in range(4)]  # a file never fills like a pipe
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WAL_WRITER,
            str(path),
            str(WAL_SECONDS),
            cwd=ROOT,
            env=CHILD_ENV,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        for stderr in logs
    ]
    largest = 0
    try:
        while any(w.returncode is None for w in writers):
            largest = max(largest, wal.stat().st_size if wal.exists() else 0)
            await asyncio.sleep(0.1)
        outputs = [(await w.communicate())[0] for w in writers]
    finally:
        for log in logs:
            log.close()
        for w in writers:
            if w.returncode is None:
                w.kill()
                await w.wait()
    failures = [log.read_text()[-1500:] for log in tmp_path.glob("writer-*.log")]  # noqa: ASYNC240
    assert all(w.returncode == 0 for w in writers), failures
    commits = [int(out) for out in outputs]
    assert min(commits) > 100, commits  # every writer really wrote
    assert largest < WAL_BOUND, f"the WAL reached {largest / 2**20:.0f} MB"
