"""Run the benchmarks and write ``bench/results.md``: one table of the request path, from one run.

    python -m bench.run                         # the request path and logins (about 6 minutes on 2 cores)
    python -m bench.run --quick                 # short durations, one run each: a smoke check
    python -m bench.run --only gateway          # some of: gateway, live, files, audit, workspaces, login
    python -m bench.run --only store            # the embedded store against raw sqlite3: bench/store-results.md
    python -m bench.run --generator python      # force the Python load generator even if wrk is installed

The request path and logins share one system started with the supervisor on free ports and a temp
data dir, stopped (SIGINT) at the end; the references (trivial aiohttp route, bare NATS hop, FastAPI
app) run beside it in processes of their own.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from pathlib import Path

from bench.common import (
    RESULTS_PATH,
    STORE_RESULTS_PATH,
    Options,
    Row,
    Section,
    log,
    machine,
    write_results,
    write_table,
)
from bench.system import System

SYSTEM_PARTS = ("gateway", "live", "files", "audit", "workspaces", "login")
CHOICES = ("store", *SYSTEM_PARTS)

NOTES = [
    "CPU per request: CPU time (user + system) each process used during the measured runs ÷ requests "
    "answered (µs for HTTP rows, ms for logins), total first, each process by name (its service; `nats` is "
    "nats-server, `load generator` is wrk), those under 2 % of the total summed as `rest`. With 2 cores, a "
    "total of T ms caps a rate near 2 x 1000 / T per second however the work is spread; the load generator "
    "shares those cores.",
]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short durations, one run each (smoke check)")
    parser.add_argument("--only", default=",".join(SYSTEM_PARTS), help=f"comma-separated subset of {','.join(CHOICES)}")
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="HTTP load generator: wrk when installed (auto), or the Python one",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_PATH, help="results file (default bench/results.md)")
    args = parser.parse_args(argv)
    args.names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.names if name not in CHOICES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(CHOICES)}")
    return args


def report_logs(system: System) -> None:
    for name, size in system.log_sizes().items():
        path = system.data_dir / "logs" / f"{name}.log"
        text = path.read_text(errors="replace")
        problems = [line for line in text.splitlines() if "Traceback" in line or '"level":"error"' in line]
        log(f"log {name}: {size:,} bytes, {len(problems)} error/traceback lines")
        for line in problems[:3]:
            log(f"    {line[:200]}")


def store_section(options: Options) -> None:
    from bench import store

    try:
        section = store.run(options)
    except Exception as error:
        section = Section("store", "store — FAILED")
        section.body = ["```", *"".join(traceback.format_exception(error)).strip().splitlines()[-15:], "```"]
    write_results({"store": section.render(options)}, STORE_RESULTS_PATH)
    log(f"wrote {STORE_RESULTS_PATH}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    options = Options(
        quick=args.quick, command=shlex.join(["python", "-m", "bench.run", *argv]), generator=args.generator
    )
    log(f"machine: {machine()}; running {', '.join(args.names)}{' (quick)' if args.quick else ''}")
    started = time.monotonic()
    if "store" in args.names:
        store_section(options)
    wanted = [name for name in SYSTEM_PARTS if name in args.names]
    if not wanted:
        return 0
    from bench import audit, file_events, gateway, live, login, workspaces

    parts = {
        "gateway": gateway.run,
        "live": live.run,
        "files": file_events.run,
        "audit": audit.run,
        "workspaces": workspaces.run,
        "login": login.run,
    }
    if "live" in wanted:
        log(f"file limit raised to {live.raise_file_limit()} (sockets; the system inherits it)")
    rows: list[Row] = []
    facts: list[str] = []
    failures: list[str] = []
    # The request-path parts register hundreds of users; with workspaces requested on registration each
    # would start a file-monitor process in the middle of the measurement. They run on a system that
    # provisions on demand only; the workspace rows run on a system of their own, as shipped.
    groups = [
        ({"CODITECT_PROVISIONING_ON_REGISTER": "false"}, [n for n in wanted if n != "workspaces"]),
        ({}, [n for n in wanted if n == "workspaces"]),
    ]
    for env, names in groups:
        if not names:
            continue
        system = System(env)
        try:
            system.start()
            for name in names:  # login after gateway: it leaves thousands of sessions in the store
                try:
                    part_rows, part_facts = parts[name](options, system)
                except Exception as error:
                    log(f"{name} FAILED: {type(error).__name__}: {error}")
                    failures.append(f"{name}: {''.join(traceback.format_exception_only(error)).strip()}")
                    continue
                rows += part_rows
                facts += part_facts
                write_table(rows, facts, NOTES + [f"FAILED: {f}" for f in failures], options, args.out)
        finally:
            system.stop()
            report_logs(system)
            system.cleanup()
    write_table(rows, facts, NOTES + [f"FAILED: {f}" for f in failures], options, args.out)
    log(f"wrote {args.out} in {time.monotonic() - started:.0f} s" + (f"; {len(failures)} failed" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
