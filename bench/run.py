"""Run the benchmarks and write ``bench/results.md``.

    python -m bench.run                         # everything (about 5 minutes on 2 cores)
    python -m bench.run --quick                 # short durations, one run each: a smoke check
    python -m bench.run --only store,gateway    # some of: store, gateway, login, tokens
    python -m bench.run --generator python      # force the Python load generator even if wrk is installed

The store benchmark runs first, with nothing else started. The others share one system started with
the supervisor on free ports and a temp data dir, stopped (SIGINT) at the end.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

from bench.common import ORDER, RESULTS_PATH, Options, Section, log, machine, write_results
from bench.system import System

NEEDS_SYSTEM = ("gateway", "tokens", "login")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short durations, one run each (smoke check)")
    parser.add_argument("--only", default=",".join(ORDER), help=f"comma-separated subset of {','.join(ORDER)}")
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="HTTP load generator: wrk when installed (auto), or the Python one",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_PATH, help="results file (default bench/results.md)")
    args = parser.parse_args(argv)
    args.names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.names if name not in ORDER]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    return args


def failed_section(name: str, error: BaseException) -> Section:
    section = Section(name, f"{name} — FAILED")
    tail = "".join(traceback.format_exception(error)).strip().splitlines()[-15:]
    section.body = ["The benchmark failed:", "", "```", *tail, "```"]
    return section


def report_logs(system: System) -> None:
    for name, size in system.log_sizes().items():
        path = system.data_dir / "logs" / f"{name}.log"
        text = path.read_text(errors="replace")
        problems = sum(1 for line in text.splitlines() if "Traceback" in line or " ERROR " in line)
        log(f"log {name}: {size:,} bytes, {problems} error/traceback lines")
        if problems:
            for line in [x for x in text.splitlines() if "Traceback" in x or " ERROR " in x][:3]:
                log(f"    {line[:200]}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    options = Options(
        quick=args.quick, command=shlex.join(["python", "-m", "bench.run", *argv]), generator=args.generator
    )
    log(f"machine: {machine()}; running {', '.join(args.names)}{' (quick)' if args.quick else ''}")
    started = time.monotonic()
    sections: dict[str, str] = {}
    failures = 0

    def record(name: str, build: object) -> None:
        nonlocal failures
        load_before = os.getloadavg()[0]
        try:
            section = build()  # type: ignore[operator]
        except Exception as error:
            failures += 1
            log(f"{name} FAILED: {type(error).__name__}: {error}")
            section = failed_section(name, error)
        section.load_before = load_before
        sections[name] = section.render(options)
        write_results(sections, args.out)  # after each benchmark, so an interrupted run keeps what it had

    if "store" in args.names:
        from bench import store

        record("store", lambda: store.run(options))

    wanted = [name for name in NEEDS_SYSTEM if name in args.names]
    if wanted:
        from bench import gateway, login, tokens

        modules = {"gateway": gateway, "tokens": tokens, "login": login}
        system = System()
        try:
            try:
                system.start()
            except Exception as error:
                for name in wanted:
                    record(name, lambda error=error: (_ for _ in ()).throw(error))
            else:
                for name in wanted:  # login last: it leaves thousands of sessions in the store
                    record(name, lambda name=name: modules[name].run(options, system))
        finally:
            system.stop()
            report_logs(system)
            system.cleanup()

    log(
        f"wrote {args.out} in {time.monotonic() - started:.0f} s"
        + (f"; {failures} benchmark(s) failed" if failures else "")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
