"""The request path: HTTP through the gateway (and the bus) against references measured in the same
run — (b) a trivial aiohttp route, (r) a bare hop (aiohttp → raw nats-py request → raw nats-py
responder), (p) FastAPI + uvicorn doing the authenticated read of (c)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from bench.common import Options, Row, log, median, ratio_text
from bench.loadgen import Load, RequestSpec, choose, run_load, wrk_version
from bench.system import (
    CpuMeter,
    System,
    bare_hop,
    call_json,
    cpu_text,
    fastapi_reference,
    front_count,
    register_and_login,
    trivial_server,
)

CONNECTIONS = 64


def generator_name(options: Options) -> str:
    if choose(options.generator) == "wrk":
        return f"wrk {wrk_version()} (1 thread, separate process)"
    why = "" if options.generator == "python" else " — wrk not installed"
    return f"Python asyncio + aiohttp generator (separate process){why}"


@dataclass
class Measured:
    """The runs of one target and the CPU the processes used during them."""

    loads: list[Load] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    one_connection: Load | None = None

    @property
    def requests(self) -> int:
        return sum(load.completed or load.requests for load in self.loads)

    @property
    def rps(self) -> float:
        return median(load.rps for load in self.loads)

    def row(self, key: str, target: str, includes: str) -> Row:
        failed = sum(load.failed for load in self.loads)
        total = sum(load.requests + load.errors for load in self.loads)
        return Row(
            key=key,
            target=target,
            includes=includes,
            rate=self.rps,
            p50_ms=median(load.p50_ms for load in self.loads),
            p99_ms=median(load.p99_ms for load in self.loads),
            p50_one_ms=self.one_connection.p50_ms if self.one_connection else None,
            failed=f"{failed} / {total:,}",
            cpu=cpu_text(self.cpu, self.requests, unit="µs"),
        )


def measure(
    targets: dict[str, RequestSpec | list[RequestSpec]],
    options: Options,
    meter: CpuMeter,
    *,
    duration: float,
    rounds: int,
) -> dict[str, Measured]:
    """Each target once per round at CONNECTIONS, the order rotating, after a 1 s warm-up of each. A
    target given as several requests has them sent in turn (wrk) or one per connection (Python)."""
    names = list(targets)
    specs = {name: spec if isinstance(spec, list) else [spec] for name, spec in targets.items()}
    for name in names:
        run_load(specs[name], connections=CONNECTIONS, duration=1.0, warmup=0.0, generator=options.generator)
    results = {name: Measured() for name in names}
    for round_no in range(rounds):
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        for name in order:
            before = meter.snapshot()
            load = run_load(
                specs[name], connections=CONNECTIONS, duration=duration, warmup=0.0, generator=options.generator
            )
            for process, seconds in CpuMeter.delta(before, meter.snapshot()).items():
                results[name].cpu[process] = results[name].cpu.get(process, 0.0) + seconds
            log(
                f"http: {name}: {load.rps:,.0f} req/s, p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms"
                + (f", {load.failed} failed" if load.failed else "")
            )
            results[name].loads.append(load)
    return results


RESPONDERS = {
    "dispatcher": "our dispatcher (`shared.dispatch`: the ping's models, envelope, trace context)",
    "faststream-lean": "a FastStream subscriber, lean (no logger, no middlewares)",
    "faststream": "a FastStream subscriber as the services had it (telemetry middleware)",
}


def responder_rows(options: Options, system: System, *, duration: float, rounds: int) -> list[Row]:
    """The bare hop with what a service could run as its responder instead of raw nats-py: the
    responder's CPU per message is the figure (each one alone, in turn, in every round)."""
    measured = {kind: Measured() for kind in RESPONDERS}
    for _ in range(rounds):
        for kind in RESPONDERS:
            with bare_hop(f"nats://127.0.0.1:{system.nats_port}", kind, system.data_dir / "bus") as (url, pids):
                meter = CpuMeter(system, pids)
                run_load([RequestSpec(url)], connections=CONNECTIONS, duration=1.0, generator=options.generator)
                before = meter.snapshot()
                load = run_load(
                    [RequestSpec(url)], connections=CONNECTIONS, duration=duration, generator=options.generator
                )
                for process, seconds in CpuMeter.delta(before, meter.snapshot()).items():
                    measured[kind].cpu[process] = measured[kind].cpu.get(process, 0.0) + seconds
                measured[kind].loads.append(load)
                log(f"http: bare hop with {kind}: {load.rps:,.0f} req/s, p50 {load.p50_ms:.1f} ms")
    return [
        measured[kind].row("", f"bare hop, responder: {kind}", f"(r) with {what} as the responder")
        for kind, what in RESPONDERS.items()
    ]


def goal_row(row: Row, value: float, reference: str, at_least: float, p99_under: float | None = None) -> Row:
    """Fill the ratio, the goal and the verdict of ``row`` (``value`` is rate ÷ the reference's rate)."""
    row.ratio = ratio_text(value, reference)
    row.goal = f"≥ {at_least:g} x {reference}" + (f", p99 < {p99_under:g} ms" if p99_under is not None else "")
    met = value == value and value >= at_least and (p99_under is None or row.p99_ms < p99_under)
    row.verdict = "met" if met else "**not met**"
    return row


def run(options: Options, system: System) -> tuple[list[Row], list[str]]:
    duration = 2.0 if options.quick else 5.0
    rounds = 1 if options.quick else 3
    token = register_and_login(system.base, f"bench-http-{secrets.token_hex(4)}@example.com", "bench-password-123")
    bearer = {"Authorization": f"Bearer {token}"}
    status, created = call_json("POST", f"{system.base}/sessions", {"name": "bench session"}, token=token)
    data = created.get("data")
    if status != 201 or not isinstance(data, dict):
        raise RuntimeError(f"POST /sessions answered {status}: {created}")
    session_id = data["id"]
    json_body = {**bearer, "Content-Type": "application/json"}
    # The write again, from CONNECTIONS users: one user's creates all read (and so contend on) that
    # user's quota counter and commit one after another; many users' creates share commits.
    writers = [
        register_and_login(system.base, f"bench-writer-{i}-{secrets.token_hex(4)}@example.com", "bench-password-123")
        for i in range(CONNECTIONS)
    ]
    with (
        trivial_server() as (trivial_url, trivial_pids),
        bare_hop(f"nats://127.0.0.1:{system.nats_port}", bus_dir=system.data_dir / "bus") as (hop_url, hop_pids),
        fastapi_reference() as (fastapi_url, fastapi_token, fastapi_pids),
    ):
        targets = {
            "b": RequestSpec(trivial_url),
            "r": RequestSpec(hop_url),
            "p": RequestSpec(fastapi_url, headers={"Authorization": f"Bearer {fastapi_token}"}),
            "health": RequestSpec(f"{system.base}/health"),
            "ping": RequestSpec(f"{system.base}/ping/auth"),
            "whoami": RequestSpec(f"{system.base}/auth/whoami", headers=bearer),
            "c": RequestSpec(f"{system.base}/users/me", headers=bearer),
            "session_read": RequestSpec(f"{system.base}/sessions/{session_id}", headers=bearer),
            "session_write": RequestSpec(
                f"{system.base}/sessions", method="POST", headers=json_body, body={"name": "bench session"}
            ),
            "session_write_users": [
                RequestSpec(
                    f"{system.base}/sessions",
                    method="POST",
                    headers={"Authorization": f"Bearer {writer}", "Content-Type": "application/json"},
                    body={"name": "bench session"},
                )
                for writer in writers
            ],
        }
        meter = CpuMeter(system, {"bench server": trivial_pids, **hop_pids, **fastapi_pids})
        results = measure(targets, options, meter, duration=duration, rounds=rounds)
        for name in ("b", "health", "c", "p"):
            single = run_load(
                [targets[name]], connections=1, duration=duration, warmup=0.5, generator=options.generator
            )
            log(f"http: {name} at 1 connection: p50 {single.p50_ms:.2f} ms")
            results[name].one_connection = single
    rps = {name: m.rps for name, m in results.items()}
    count = front_count()
    fronts = "one process" if count == 1 else f"{count} processes sharing the port"
    rows = [
        results["b"].row(
            "(b)",
            "trivial aiohttp route",
            f"the bench's own server: aiohttp + uvloop, one orjson body; {fronts} as the gateway runs",
        ),
        results["r"].row(
            "(r)",
            "bare hop",
            "aiohttp route → raw nats-py request → raw nats-py responder in another process → back; no "
            f"middlewares, envelope, models or trace context; {fronts} of the route, as the gateway runs",
        ),
        results["p"].row(
            "(p)",
            "FastAPI + uvicorn, authenticated read",
            "2 workers, uvloop, httptools: PyJWT EdDSA verify of the bearer token (every request) + one SQLite "
            "point read (WAL) + a pydantic response model",
        ),
        goal_row(
            results["health"].row("", "`GET /api/v5/health`", "the gateway's edge (request id, trace ids), no bus"),
            rps["health"] / rps["b"],
            "(b)",
            0.8,
            p99_under=5.0,
        ),
        goal_row(
            results["ping"].row(
                "",
                "`GET /api/v5/ping/auth`",
                "edge → NATS request with the trace context → auth's dispatcher → ping handler (store check cached "
                "1 s) → envelope → back",
            ),
            rps["ping"] / rps["r"],
            "(r)",
            0.7,
        ),
        results["whoami"].row(
            "", "`GET /api/v5/auth/whoami`", "edge + access-token check (verified-token cache, deny set); no bus"
        ),
        goal_row(
            results["c"].row(
                "(c)",
                "`GET /api/v5/users/me`",
                "edge + token check (cached) → NATS → auth's dispatcher → one store read (`await store.run`) → back",
            ),
            rps["c"] / rps["p"],
            "(p)",
            1.5,
            p99_under=25.0,
        ),
        goal_row(
            results["session_read"].row(
                "(s)",
                "`GET /api/v5/sessions/{id}`",
                "edge + token check (cached) → NATS → session's dispatcher → one store read (inline) → ETag → back",
            ),
            rps["session_read"] / rps["p"],
            "(p)",
            1.5,
            p99_under=25.0,
        ),
        goal_row(
            results["session_write"].row(
                "",
                "`POST /api/v5/sessions`",
                "edge + token check → NATS → session → one write transaction (record, 4 index entries, outbox "
                "event; quota read) on the writer thread → event published → 201",
            ),
            rps["session_write"] / rps["session_read"],
            "(s)",
            0.5,
        ),
        goal_row(
            results["session_write_users"].row(
                "",
                f"`POST /api/v5/sessions`, {CONNECTIONS} users",
                f"the same write spread over {CONNECTIONS} users (wrk sends their requests in turn): no two "
                "concurrent creates read the same quota counter",
            ),
            rps["session_write_users"] / rps["session_read"],
            "(s)",
            0.5,
        ),
    ]
    rows[3:3] = responder_rows(options, system, duration=duration, rounds=rounds)
    facts = [
        f"HTTP load: {generator_name(options)}; {CONNECTIONS} connections (keep-alive); {rounds} x {duration:g} s "
        "per target, the order rotating, after a 1 s warm-up of each; medians. The p50 at 1 connection: one "
        f"{duration:g} s run.",
        "system: `python -m shared.supervisor up` (NATS + every service + gateway, embedded store in a temp dir, "
        f"default settings), ready in {system.started_in:.1f} s",
    ]
    return rows, facts
