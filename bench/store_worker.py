"""One store-benchmark process: ``python -m bench.store_worker SPEC_JSON``.

Runs a list of timed measurements on one SQLite file, each ``[impl, op]`` for ``duration`` seconds:

- impl ``raw``: plain SQLite through apsw (the store's own SQLite) with the store's pragmas (WAL,
  ``synchronous``, busy timeout); a write is ``BEGIN; INSERT OR REPLACE; COMMIT``, reads are single
  autocommit ``SELECT``s.
- impl ``run_sync``: ``EmbeddedStore.run_sync(fn)``: the function on the calling thread, the commit
  on the store's writer thread.
- impl ``run``: ``await EmbeddedStore.run(fn)``, what services call: the function inline on the
  event loop, a commit handed to the writer thread.

ops: ``write`` (one key of 10,000, 100-byte value, committed), ``get`` (one key), ``range`` (100
consecutive keys), ``transfer`` (read two of 1,000 account keys, write both: the bank transfer),
``bigwrite`` (an 80 kB value, one of 400 keys). Keys are tuple-layer keys. The first
measurement waits, with ``barrier``, for a line on stdin after printing ``ready``, so several
processes start together. Prints one JSON
list: ops, seconds and, for the store, how many times transaction functions ran (retries included).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import fdb.tuple

KEYS = 10_000
RANGE = 100
VALUE = b"v" * 100
SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"


def key(i: int) -> bytes:
    return bytes(fdb.tuple.pack(("bench", i)))


def raw_connection(path: Path, sync: str) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.set_busy_timeout(5_000)
    conn.execute("PRAGMA journal_mode = WAL").fetchall()
    conn.execute(f"PRAGMA synchronous = {sync.upper()}")
    conn.execute(SCHEMA)
    return conn


def prefill(path: Path, sync: str) -> None:
    from shared.store.embedded import EmbeddedStore

    store = EmbeddedStore(path, sync=sync)
    try:
        for start in range(0, KEYS, 1000):

            def fill(tx: Any, start: int = start) -> None:
                for i in range(start, min(start + 1000, KEYS)):
                    tx.set(key(i), VALUE)

            store.run_sync(fill)
    finally:
        store.close()


class Counter:
    calls = 0


ACCOUNTS = 1_000


def account(i: int) -> bytes:
    return bytes(fdb.tuple.pack(("bench", "account", i)))


BIG_VALUE = bytes(random.Random(7).getrandbits(8) for _ in range(80_000))


def _tx_function(op: str, rng: random.Random, counter: Counter) -> Callable[[Any], Any]:
    if op == "bigwrite":
        k = bytes(fdb.tuple.pack(("bench", "big", rng.randrange(400))))

        def bigwrite(tx: Any) -> None:
            counter.calls += 1
            tx.set(k, BIG_VALUE)

        return bigwrite
    if op == "transfer":
        source, target = rng.sample(range(ACCOUNTS), 2)
        a, b = account(source), account(target)

        def transfer(tx: Any) -> None:
            counter.calls += 1
            balance_a, balance_b = int(tx.get(a) or b"1000"), int(tx.get(b) or b"1000")
            tx.set(a, b"%d" % (balance_a - 1))
            tx.set(b, b"%d" % (balance_b + 1))

        return transfer
    if op == "write":
        k = key(rng.randrange(KEYS))

        def write(tx: Any) -> None:
            counter.calls += 1
            tx.set(k, VALUE)

        return write
    if op == "get":
        k = key(rng.randrange(KEYS))

        def get(tx: Any) -> Any:
            counter.calls += 1
            return tx.get(k)

        return get
    start = rng.randrange(KEYS - RANGE)
    begin, end = key(start), key(start + RANGE)

    def get_range(tx: Any) -> Any:
        counter.calls += 1
        return tx.get_range(begin, end, limit=RANGE)

    return get_range


def measure_raw(conn: apsw.Connection, op: str, duration: float, rng: random.Random) -> dict[str, Any]:
    count = 0
    started = time.perf_counter()
    deadline = started + duration
    while time.perf_counter() < deadline:
        for _ in range(16):
            if op == "write":
                conn.execute("BEGIN")
                conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key(rng.randrange(KEYS)), VALUE))
                conn.execute("COMMIT")
            elif op == "get":
                conn.execute("SELECT value FROM kv WHERE key = ?", (key(rng.randrange(KEYS)),)).fetchone()
            else:
                start = rng.randrange(KEYS - RANGE)
                rows = conn.execute(
                    f"SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key LIMIT {RANGE}",
                    (key(start), key(start + RANGE)),
                ).fetchall()
                assert len(rows) == RANGE
            count += 1
    return {"ops": count, "seconds": time.perf_counter() - started}


def measure_run_sync(store: Any, op: str, duration: float, rng: random.Random) -> dict[str, Any]:
    counter = Counter()
    count = 0
    started = time.perf_counter()
    deadline = started + duration
    while time.perf_counter() < deadline:
        for _ in range(16):
            store.run_sync(_tx_function(op, rng, counter))
            count += 1
    return {"ops": count, "seconds": time.perf_counter() - started, "calls": counter.calls}


async def measure_run(store: Any, op: str, duration: float, rng: random.Random) -> dict[str, Any]:
    counter = Counter()
    count = 0
    started = time.perf_counter()
    deadline = started + duration
    while time.perf_counter() < deadline:
        await store.run(_tx_function(op, rng, counter))
        count += 1
    return {"ops": count, "seconds": time.perf_counter() - started, "calls": counter.calls}


def main(spec: dict[str, Any]) -> list[dict[str, Any]]:
    from shared.store.embedded import EmbeddedStore

    path = Path(spec["path"])
    sync = spec["sync"]
    rng = random.Random(spec.get("seed", 0))
    conn = raw_connection(path, sync)
    store = EmbeddedStore(path, sync=sync)
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    results = []
    try:
        store.run_sync(lambda tx: tx.get(key(0)))  # open this thread's connection before the clock starts
        loop.run_until_complete(store.run(lambda tx: tx.get(key(0))))
        if spec.get("barrier"):
            print("ready", flush=True)
            sys.stdin.readline()
        for impl, op in spec["tasks"]:
            if impl == "raw":
                result = measure_raw(conn, op, spec["duration"], rng)
            elif impl == "run_sync":
                result = measure_run_sync(store, op, spec["duration"], rng)
            else:
                result = loop.run_until_complete(measure_run(store, op, spec["duration"], rng))
            results.append({"impl": impl, "op": op, **result})
    finally:
        loop.close()
        store.close()
        conn.close()
    return results


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
