"""HTTP load: ``wrk`` when it is installed, else an asyncio + aiohttp generator in its own process.

wrk sends requests with bodies through a Lua script that cycles through them (one per user for
logins); it costs a fraction of the Python generator's CPU, which shares the cores with the system.

The Python generator (``python -m bench.loadgen SPEC.json``) opens N connections through one
``aiohttp.ClientSession`` with ``TCPConnector(limit=N)``, runs N workers for a fixed duration after a
short warm-up, records every request's latency and prints one JSON object: requests, req/s, p50,
p99, non-2xx and errors. Worker ``i`` sends ``requests[i % len(requests)]``, so each connection can
carry its own body (one user per client for logins).

Both generators run as a separate process from this one and from the server being measured.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import percentile


@dataclass
class Load:
    """One timed run. ``requests`` counts responses of any status inside the window (``non_2xx`` among
    them); ``errors`` are requests without a response (connection errors, timeouts)."""

    generator: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    completed: int = 0  # every response, warm-up and past-deadline ones too (for CPU per request)

    @property
    def failed(self) -> int:
        return self.non_2xx + self.errors


@dataclass
class RequestSpec:
    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


# ---------------------------------------------------------------- Python generator (child process)


async def _generate(
    requests: list[RequestSpec], connections: int, duration: float, warmup: float, timeout: float
) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    completed = 0
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    start = time.perf_counter()
    measure_from = start + warmup
    deadline = measure_from + duration

    async def worker(spec: RequestSpec, session: aiohttp.ClientSession) -> None:
        nonlocal errors, completed
        data = json.dumps(spec.body).encode() if spec.body is not None else None
        headers = dict(spec.headers)
        if data is not None:
            headers.setdefault("Content-Type", "application/json")
        while True:
            t0 = time.perf_counter()
            if t0 >= deadline:
                return
            try:
                async with session.request(spec.method, spec.url, data=data, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError, OSError):
                if t0 >= measure_from:
                    errors += 1
                await asyncio.sleep(0.01)
                continue
            t1 = time.perf_counter()
            completed += 1
            if t0 >= measure_from and t1 <= deadline:
                latencies.append(t1 - t0)
                statuses[str(status)] = statuses.get(str(status), 0) + 1

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        await asyncio.gather(*(worker(requests[i % len(requests)], session) for i in range(connections)))
    latencies.sort()
    count = len(latencies)
    non_2xx = sum(n for status, n in statuses.items() if not status.startswith("2"))
    return asdict(
        Load(
            generator="python (asyncio + aiohttp, 1 process)",
            requests=count,
            seconds=duration,
            rps=count / duration,
            p50_ms=percentile(latencies, 0.50) * 1000,
            p99_ms=percentile(latencies, 0.99) * 1000,
            non_2xx=non_2xx,
            errors=errors,
            statuses=statuses,
            completed=completed,
        )
    )


def _child_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    requests = [RequestSpec(**r) for r in spec["requests"]]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(
        _generate(requests, spec["connections"], spec["duration"], spec["warmup"], spec.get("timeout", 30.0))
    )
    print(json.dumps(result), flush=True)


def _run_python(requests: list[RequestSpec], connections: int, duration: float, warmup: float) -> Load:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(
            {
                "requests": [asdict(r) for r in requests],
                "connections": connections,
                "duration": duration,
                "warmup": warmup,
            },
            handle,
        )
        spec_path = handle.name
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.loadgen", spec_path],
            capture_output=True,
            text=True,
            timeout=duration + warmup + 120,
        )
    finally:
        Path(spec_path).unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr.strip()[-2000:]}")
    return Load(**json.loads(done.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------- wrk

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNIT[match.group(2)]


def wrk_version() -> str | None:
    path = shutil.which("wrk")
    if path is None:
        return None
    done = subprocess.run([path, "--version"], capture_output=True, text=True)
    match = re.search(r"wrk (\S+)", done.stdout + done.stderr)
    return match.group(1) if match else "unknown version"


def _lua_string(text: str) -> str:
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def _lua_script(requests: list[RequestSpec]) -> str:
    """A wrk script sending ``requests`` in turn, each built once by ``wrk.format`` in ``init`` (at the
    script's top level wrk does not know the host yet, and the requests would go without one)."""
    lines = ["local requests = {}", "function init(args)"]
    for i, spec in enumerate(requests, start=1):
        headers = dict(spec.headers)
        body = "nil"
        if spec.body is not None:
            headers.setdefault("Content-Type", "application/json")
            body = _lua_string(json.dumps(spec.body))
        path = urlsplit(spec.url).path or "/"
        header_table = "{" + ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()) + "}"
        method = _lua_string(spec.method)
        lines.append(f"  requests[{i}] = wrk.format({method}, {_lua_string(path)}, {header_table}, {body})")
    lines += [
        "end",
        "local sent = 0",
        "function request()",
        "  sent = sent + 1",
        "  return requests[(sent - 1) % #requests + 1]",
        "end",
    ]
    return "\n".join(lines) + "\n"


def _run_wrk(requests: list[RequestSpec], connections: int, duration: float, warmup: float) -> Load:
    wrk = shutil.which("wrk")
    assert wrk is not None
    spec = requests[0]
    options: list[str] = []
    script: Path | None = None
    if len(requests) == 1 and spec.method == "GET" and spec.body is None:
        for name, value in spec.headers.items():
            options += ["-H", f"{name}: {value}"]
    else:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
            handle.write(_lua_script(requests))
            script = Path(handle.name)
        options += ["-s", str(script)]
    try:
        if warmup > 0:
            subprocess.run(
                [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(warmup))}s", *options, spec.url],
                capture_output=True,
                timeout=warmup + 60,
            )
        seconds = max(1, round(duration))
        done = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency", *options, spec.url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    finally:
        if script is not None:
            script.unlink(missing_ok=True)
    out = done.stdout
    if done.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed: {out}{done.stderr}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.M)  # the latency distribution, not a "+/- Stdev" column
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    non_2xx_match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    non_2xx = int(non_2xx_match.group(1)) if non_2xx_match else 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(g) for g in socket_errors.groups()) if socket_errors else 0
    return Load(
        generator=f"wrk {wrk_version()} (1 thread)",
        requests=total,
        seconds=seconds,
        rps=rps,
        p50_ms=_ms(p50.group(1)) if p50 else float("nan"),
        p99_ms=_ms(p99.group(1)) if p99 else float("nan"),
        non_2xx=non_2xx,
        errors=errors,
        statuses={"2xx": total - non_2xx, "non-2xx": non_2xx} if non_2xx else {"2xx": total},
        completed=total,
    )


def choose(generator: str) -> str:
    """'wrk' or 'python': wrk when installed (unless told otherwise)."""
    if generator == "python" or shutil.which("wrk") is None:
        return "python"
    return "wrk"


def run_load(
    requests: list[RequestSpec], *, connections: int, duration: float, warmup: float = 0.5, generator: str = "auto"
) -> Load:
    """Load ``requests`` for ``duration`` seconds from a separate process: wrk sends them in turn, the
    Python generator gives each connection one of them (cycling)."""
    if choose(generator) == "wrk":
        return _run_wrk(requests, connections, duration, warmup)
    return _run_python(requests, connections, duration, warmup)


if __name__ == "__main__":
    _child_main(sys.argv[1])
