"""Shared helpers: machine facts, medians, markdown tables, free ports, the results file."""

from __future__ import annotations

import os
import platform
import re
import socket
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RESULTS_PATH = Path(__file__).with_name("results.md")
STORE_RESULTS_PATH = Path(__file__).with_name("store-results.md")
ORDER = ("store", "gateway", "live", "login")


@dataclass
class Options:
    quick: bool
    command: str
    generator: str = "auto"


@dataclass
class Section:
    """One benchmark's part of results.md: a heading, facts about the run, and markdown tables."""

    name: str
    title: str
    facts: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    load_before: float = field(default_factory=lambda: os.getloadavg()[0])

    def render(self, options: Options) -> str:
        head = [
            f"<!-- bench:{self.name} -->",
            f"## {self.title}",
            "",
            f"- command: `{options.command}`",
            f"- machine: {machine()}",
            f"- date: {now_text()}; load average (1 min) when it started: {self.load_before:.2f}",
            *(f"- {fact}" for fact in self.facts),
            "",
        ]
        return "\n".join([*head, *self.body, "", f"<!-- /bench:{self.name} -->"])


@dataclass
class Row:
    """One line of the results table: a target measured in this run."""

    key: str
    target: str
    includes: str
    rate: float
    unit: str = "req/s"
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    p50_one_ms: float | None = None
    failed: str = ""
    cpu: str = ""
    ratio: str = ""
    goal: str = ""
    verdict: str = ""


HEADERS = [
    "",
    "target",
    "rate",
    "p50 ms",
    "p99 ms",
    "p50 ms, 1 connection",
    "failed / requests",
    "CPU per request, by process",
    "same-run ratio",
    "goal",
    "",
]


def ratio_text(value: float, reference: str) -> str:
    return "n/a" if value != value else f"**{value:.2f}** x {reference}"


def write_table(rows: list[Row], facts: list[str], notes: list[str], options: Options, path: Path) -> None:
    """The results file: the command that made it, one table, and what each row includes."""
    body = [
        [
            row.key,
            row.target,
            f"{fmt(row.rate, 1 if row.rate < 1000 else 0)} {row.unit}",
            fmt(row.p50_ms, 1),
            fmt(row.p99_ms, 1),
            fmt(row.p50_one_ms, 2) if row.p50_one_ms is not None else "",
            row.failed,
            row.cpu,
            row.ratio,
            row.goal,
            row.verdict,
        ]
        for row in rows
    ]
    legend = [f"- {row.key or row.target}: {row.includes}" for row in rows if row.includes]
    lines = [
        "# Coditect backend benchmarks: the request path",
        "",
        f"`{options.command}` — {machine()}; {now_text()}; load average (1 min) at the start "
        f"{os.getloadavg()[0]:.2f}. Every figure below comes from this one run; ratios compare medians of it.",
        "",
        *(f"- {fact}" for fact in facts),
        "",
        *table(HEADERS, body),
        "",
        *legend,
        "",
        *notes,
        "",
    ]
    path.write_text("\n".join(lines))


def log(message: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def nproc() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine() -> str:
    return (
        f"nproc={nproc()}, Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, SQLite {sqlite_version()}"
    )


def sqlite_version() -> str:
    import apsw

    return f"{apsw.sqlite_lib_version()} (apsw {apsw.apsw_version()})"


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def median(values: Iterable[float]) -> float:
    data = [v for v in values if v == v]  # drop NaN
    return statistics.median(data) if data else float("nan")


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None or value != value:
        return "n/a"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def ratio(a: float, b: float, digits: int = 2) -> str:
    if a != a or b != b or b == 0:
        return "n/a"
    return f"{a / b:.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_SECTION = re.compile(r"<!-- bench:(\w+) -->.*?<!-- /bench:\1 -->", re.S)


def write_results(sections: dict[str, str], path: Path = STORE_RESULTS_PATH) -> None:
    """Replace the sections that ran, keep the others from an earlier run, in a fixed order."""
    kept: dict[str, str] = {}
    if path.exists():
        for match in _SECTION.finditer(path.read_text()):
            kept[match.group(1)] = match.group(0)
    kept.update(sections)
    names = [name for name in ORDER if name in kept] + [name for name in kept if name not in ORDER]
    header = [
        "# Coditect backend benchmarks: the embedded store",
        "",
        "Written by `python -m bench.run --only store` (the request path is in `bench/results.md`). Each section",
        "says the command, machine and date that produced it. Numbers are medians of the runs stated; ratios",
        "compare numbers measured in the same run. The machine is shared and noisy.",
        "",
    ]
    path.write_text("\n".join(header) + "\n" + "\n\n".join(kept[name] for name in names) + "\n")
