"""Store benchmark: the embedded backend (SQLite WAL through apsw) on a file in a temp dir, against
raw SQLite on the same file.

Every measurement runs in worker processes (``bench.store_worker``): one process for the
single-process numbers (raw SQLite, ``run_sync`` and ``run`` interleaved, op by op), then four
processes writing at once and eight doing bank transfers, each with its own ``EmbeddedStore`` on the
same file; last, the WAL's size while four processes write 80 kB values (``bench.wal_worker``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Options, Section, fmt, log, median, ratio, table
from bench.store_worker import KEYS, RANGE, prefill
from bench.system import REPO

IMPLS = ("raw", "run_sync", "run")
OPS = ("write", "get", "range")
OP_NAMES = {
    "write": "write txn, 1 key (committed)",
    "get": "point read",
    "range": f"range read, {RANGE} keys",
}
WRITERS = 4
TRANSFER_PROCESSES = 8


def _workers(specs: list[dict[str, Any]], timeout: float) -> list[list[dict[str, Any]]]:
    """Start one worker per spec, release them together, and collect their results."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.store_worker", json.dumps({**spec, "barrier": True})],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for spec in specs
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"store worker failed: {line}{process.stderr.read() if process.stderr else ''}")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = []
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            if process.returncode != 0:
                raise RuntimeError(f"store worker failed: {err.strip()[-2000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


WAL_WRITERS = 4


def _wal_over_time(path: Path, seconds: float) -> dict[str, Any]:
    """Four processes write 80 kB values for ``seconds``; the WAL's size is sampled every 0.25 s."""
    spec = {"path": str(path), "sync": "normal", "duration": seconds, "tasks": [["run_sync", "bigwrite"]]}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.store_worker", json.dumps({**spec, "seed": i})],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WAL_WRITERS)
    ]
    wal = path.with_name(path.name + "-wal")
    samples: list[float] = []
    try:
        while any(process.poll() is None for process in processes):
            samples.append(wal.stat().st_size / 2**20 if wal.exists() else 0.0)
            time.sleep(0.25)
        results = []
        for process in processes:
            out, err = process.communicate(timeout=60)
            if process.returncode != 0:
                raise RuntimeError(f"store worker failed: {err.strip()[-2000:]}")
            results.append(json.loads(out.strip().splitlines()[-1])[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    commits = sum(r["ops"] / r["seconds"] for r in results)
    return {"max_mb": max(samples, default=0.0), "median_mb": median(samples), "commits": commits}


def run(options: Options) -> Section:
    duration = 0.3 if options.quick else 1.5
    rounds = 1 if options.quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="coditect-bench-store-"))
    rows: list[list[str]] = []
    try:
        for sync in ("normal", "full"):
            path = tmp / sync / "bench.sqlite3"
            path.parent.mkdir(parents=True)
            log(f"store: prefill {KEYS:,} keys, sync={sync}")
            prefill(path, sync)
            single: dict[tuple[str, str], list[float]] = {}
            single_calls: dict[tuple[str, str], list[float]] = {}
            multi: list[float] = []
            multi_retry: list[float] = []
            transfers: list[float] = []
            transfer_retry: list[float] = []
            for round_no in range(rounds):
                log(f"store: sync={sync} round {round_no + 1}/{rounds}")
                order = IMPLS[round_no % 3 :] + IMPLS[: round_no % 3]  # rotate: no impl always goes first
                tasks = [[impl, op] for op in OPS for impl in order]
                spec = {"path": str(path), "sync": sync, "duration": duration, "tasks": tasks, "seed": round_no}
                for result in _workers([spec], timeout=len(tasks) * duration * 10 + 60)[0]:
                    k = (result["impl"], result["op"])
                    single.setdefault(k, []).append(result["ops"] / result["seconds"])
                    if "calls" in result:
                        single_calls.setdefault(k, []).append(result["calls"] / max(1, result["ops"]) - 1)
                specs = [
                    {
                        "path": str(path),
                        "sync": sync,
                        "duration": duration * 2,
                        "tasks": [["run", "write"]],
                        "seed": 100 * round_no + i,
                    }
                    for i in range(WRITERS)
                ]
                results = [r[0] for r in _workers(specs, timeout=duration * 20 + 60)]
                multi.append(sum(r["ops"] / r["seconds"] for r in results))
                ops = sum(r["ops"] for r in results)
                multi_retry.append(sum(r["calls"] for r in results) / max(1, ops) - 1)
                transfer_specs = [
                    {**spec, "tasks": [["run", "transfer"]], "seed": 1000 * round_no + i}
                    for i, spec in enumerate(specs[:1] * TRANSFER_PROCESSES)
                ]
                results = [r[0] for r in _workers(transfer_specs, timeout=duration * 20 + 60)]
                transfers.append(sum(r["ops"] / r["seconds"] for r in results))
                ops = sum(r["ops"] for r in results)
                transfer_retry.append(sum(r["calls"] for r in results) / max(1, ops) - 1)
            for op in OPS:
                raw, run_sync, run_async = (median(single[(impl, op)]) for impl in IMPLS)
                retries = median(single_calls.get(("run", op), [0.0]))
                rows.append(
                    [
                        f"`{sync}`",
                        OP_NAMES[op] + (", 1 process" if op == "write" else ""),
                        fmt(raw),
                        fmt(run_sync),
                        fmt(run_async),
                        ratio(run_sync, raw),
                        ratio(run_async, raw),
                        fmt(1e6 / run_async, 1) if run_async else "n/a",
                        f"{retries:.1%}",
                    ]
                )
                if op == "write":
                    total = median(multi)
                    rows.append(
                        [
                            f"`{sync}`",
                            f"write txn, 1 key, {WRITERS} processes (sum)",
                            "—",
                            "—",
                            fmt(total),
                            "—",
                            ratio(total, raw) + " (vs raw, 1 process)",
                            "—",
                            f"{median(multi_retry):.1%}",
                        ]
                    )
                    rows.append(
                        [
                            f"`{sync}`",
                            f"bank transfer (read 2 keys, write 2), {TRANSFER_PROCESSES} processes (sum)",
                            "—",
                            "—",
                            fmt(median(transfers)),
                            "—",
                            "—",
                            "—",
                            f"{median(transfer_retry):.1%}",
                        ]
                    )
        wal_seconds = 5.0 if options.quick else 30.0
        log(f"store: WAL size while {WAL_WRITERS} processes write 80 kB values for {wal_seconds:g} s")
        wal_path = tmp / "wal" / "bench.sqlite3"
        wal_path.parent.mkdir(parents=True)
        prefill(wal_path, "normal")
        wal = _wal_over_time(wal_path, wal_seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    section = Section("store", "store — embedded backend (SQLite WAL through apsw) vs raw SQLite on the same file")
    section.facts = [
        f"runs: {rounds} per number, {duration:g} s each ({duration * 2:g} s for the {WRITERS}-process writes); "
        "medians; a fresh file per `sync` mode, prefilled with "
        f'{KEYS:,} tuple-layer keys `fdb.tuple.pack(("bench", i))`, 100-byte values',
        "ops/s are sequential (one operation in flight per process); keys are uniform random; "
        "the order of raw / run_sync / run rotates from run to run",
    ]
    section.body = [
        *table(
            [
                "sync",
                "operation",
                "raw sqlite3 ops/s",
                "store.run_sync ops/s",
                "store.run ops/s",
                "run_sync ÷ raw",
                "run ÷ raw",
                "store.run µs/op",
                "tx retries",
            ],
            rows,
        ),
        "",
        "raw SQLite: one apsw connection (the store's own SQLite) with the store's pragmas (WAL, same "
        "`synchronous`, busy timeout); a write is `BEGIN; INSERT OR REPLACE; COMMIT`, a read one autocommit "
        "`SELECT`. `store.run_sync` runs the transaction function on the calling thread (a snapshot read "
        "transaction) and hands a commit to the store's writer thread, which re-reads what the function read "
        "under the write lock; `store.run` (what services `await`) runs the function inline on the event loop "
        "(no thread hop for reads) and awaits the writer thread for a commit. "
        "The multi-process rows are worker processes, each its own `EmbeddedStore` on the same file, each "
        "awaiting `store.run` in a loop; the write row's ratio is against raw SQLite in one process. "
        "tx retries = extra runs of the transaction function per committed transaction (conflicts).",
        "",
        f"WAL bound: {WAL_WRITERS} processes writing 80 kB values (`run_sync`, `sync=normal`) for "
        f"{wal_seconds:g} s: the WAL peaked at **{wal['max_mb']:.1f} MB** (median {wal['median_mb']:.1f} MB; "
        f"bound 64 MB) at {fmt(wal['commits'])} commits/s in total.",
    ]
    return section
