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
ORDER = ("store", "gateway", "login", "tokens")


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


def fmt(value: float, digits: int = 0) -> str:
    if value != value:
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


def write_results(sections: dict[str, str], path: Path = RESULTS_PATH) -> None:
    """Replace the sections that ran, keep the others from an earlier run, in a fixed order."""
    kept: dict[str, str] = {}
    if path.exists():
        for match in _SECTION.finditer(path.read_text()):
            kept[match.group(1)] = match.group(0)
    kept.update(sections)
    names = [name for name in ORDER if name in kept] + [name for name in kept if name not in ORDER]
    header = [
        "# Coditect backend benchmarks",
        "",
        "Written by `python -m bench.run` (`task bench`). Each section says the command, machine and date",
        "that produced it; a run with `--only` replaces only its own sections. Numbers are medians of the",
        "runs stated; ratios compare numbers measured in the same run. The machine is shared and noisy,",
        "and the load generator runs on the same cores as the system it measures.",
        "",
    ]
    path.write_text("\n".join(header) + "\n" + "\n\n".join(kept[name] for name in names) + "\n")
