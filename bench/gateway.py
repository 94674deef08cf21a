"""Gateway/bus benchmark: HTTP → gateway → NATS → FastStream service → back, against a trivial aiohttp
handler and the gateway's own bus-free health route, at the same concurrency."""

from __future__ import annotations

from bench.common import Options, Section, fmt, log, median, nproc, ratio, table
from bench.loadgen import Load, RequestSpec, choose, run_load, wrk_version
from bench.system import CpuMeter, System, cpu_text, trivial_server

CONNECTIONS = 64


def generator_name(options: Options, *, needs_bodies: bool = False) -> str:
    if choose(options.generator, needs_bodies=needs_bodies) == "wrk":
        return f"wrk {wrk_version()} (1 thread, separate process)"
    why = "" if options.generator == "python" or needs_bodies else " — wrk not installed"
    return f"Python asyncio + aiohttp generator (separate process){why}"


class Measured:
    """The runs of one target and the CPU the processes used during them."""

    def __init__(self) -> None:
        self.loads: list[Load] = []
        self.cpu: dict[str, float] = {}

    @property
    def requests(self) -> int:
        return sum(load.completed or load.requests for load in self.loads)

    def cpu_per_request(self) -> str:
        return cpu_text(self.cpu, self.requests)


def measure(
    targets: dict[str, RequestSpec],
    options: Options,
    meter: CpuMeter,
    *,
    connections: int,
    duration: float,
    rounds: int,
    label: str,
) -> dict[str, Measured]:
    """Each target once per round, the order rotating, after one short warm-up run of each."""
    names = list(targets)
    for name in names:
        run_load([targets[name]], connections=connections, duration=1.0, warmup=0.0, generator=options.generator)
    results = {name: Measured() for name in names}
    for round_no in range(rounds):
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        for name in order:
            before = meter.snapshot()
            load = run_load(
                [targets[name]], connections=connections, duration=duration, warmup=0.0, generator=options.generator
            )
            for process, seconds in CpuMeter.delta(before, meter.snapshot()).items():
                results[name].cpu[process] = results[name].cpu.get(process, 0.0) + seconds
            log(
                f"{label}: {name}: {load.rps:,.0f} req/s, p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms"
                + (f", {load.failed} failed" if load.failed else "")
            )
            results[name].loads.append(load)
    return results


def row(name: str, includes: str, measured: Measured) -> list[str]:
    loads = measured.loads
    failed = sum(load.failed for load in loads)
    total = sum(load.requests + load.errors for load in loads)
    return [
        name,
        includes,
        fmt(median(x.rps for x in loads)),
        fmt(median(x.p50_ms for x in loads), 1),
        fmt(median(x.p99_ms for x in loads), 1),
        f"{failed} / {total:,}",
        measured.cpu_per_request(),
    ]


HEADERS = ["target", "what it includes", "req/s", "p50 ms", "p99 ms", "failed / requests", "CPU per request"]


def cpu_note(unit: str = "request") -> str:
    return (
        f"CPU per {unit} (ms): CPU time (user + system) each process used during the measured runs ÷ {unit}s, "
        f"total first; `other services` are the four services besides auth; `load generator` is the generator "
        f"process; `bench server` is (b). With {nproc()} cores, a total of T ms caps the rate near "
        f"{nproc()} x 1000 / T per second however the work is spread."
    )


def run(options: Options, system: System) -> Section:
    duration = 2.0 if options.quick else 5.0
    rounds = 1 if options.quick else 3
    with trivial_server() as (trivial_url, trivial_pid):
        targets = {
            "a": RequestSpec(f"{system.base}/ping/auth"),
            "b": RequestSpec(trivial_url),
            "c": RequestSpec(f"{system.base}/health"),
        }
        meter = CpuMeter(system, {"bench server": trivial_pid})
        results = measure(
            targets, options, meter, connections=CONNECTIONS, duration=duration, rounds=rounds, label="gateway"
        )
    rps = {name: median(x.rps for x in m.loads) for name, m in results.items()}
    p50 = {name: median(x.p50_ms for x in m.loads) for name, m in results.items()}
    section = Section("gateway", "gateway/bus — HTTP through the gateway and NATS")
    section.facts = [
        f"load generator: {generator_name(options)}; {CONNECTIONS} connections (keep-alive)",
        f"runs: {rounds} x {duration:g} s per target (order rotating, after one 1 s warm-up run per target); medians",
        "system: `python -m shared.supervisor up` (NATS + every service + gateway, embedded store in a temp "
        f"dir, default settings), ready in {system.started_in:.1f} s",
    ]
    section.body = [
        *table(
            HEADERS,
            [
                row(
                    "(a) `GET /api/v5/ping/auth`",
                    "gateway middlewares → NATS request/reply → auth service (FastStream) ping handler, "
                    "whose store check is cached for 1 s → back",
                    results["a"],
                ),
                row(
                    "(b) trivial aiohttp handler",
                    "bench's own process: aiohttp + uvloop, no access log, one orjson body, no middlewares",
                    results["b"],
                ),
                row("(c) `GET /api/v5/health`", "gateway middlewares only, no bus", results["c"]),
            ],
        ),
        "",
        f"Ratios (same run, medians): **(a)/(b) req/s = {ratio(rps['a'], rps['b'])}**; "
        f"(c)/(b) req/s = {ratio(rps['c'], rps['b'])}; (a)/(c) req/s = {ratio(rps['a'], rps['c'])}; "
        f"p50 (a)/(b) = {ratio(p50['a'], p50['b'], 1)}x.",
        "",
        cpu_note(),
    ]
    return section
