"""Login benchmark: concurrent successful logins through the whole system, against the bare cost of
one Argon2id verify with the auth service's parameters."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor

from bench.common import Options, Section, fmt, log, median, nproc, table
from bench.gateway import generator_name
from bench.loadgen import Load, RequestSpec, run_load
from bench.system import CpuMeter, System, call_json, cpu_text

CLIENTS = 16
PASSWORD = "bench-password-123"
TARGET = 0.7


def argon2_params() -> tuple[int, int, int]:
    """(memory KiB, time cost, parallelism) from the auth service's settings, else the brief's."""
    try:
        from services.auth.settings import AuthSettings

        fields = AuthSettings.model_fields
        return (
            int(fields["argon2_memory_kib"].default),
            int(fields["argon2_time_cost"].default),
            int(fields["argon2_parallelism"].default),
        )
    except Exception:
        return 19_456, 2, 1


def verify_seconds(samples: int) -> float:
    from argon2 import PasswordHasher

    memory, time_cost, parallelism = argon2_params()
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory, parallelism=parallelism)
    stored = hasher.hash(PASSWORD)
    hasher.verify(stored, PASSWORD)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        hasher.verify(stored, PASSWORD)
        times.append(time.perf_counter() - started)
    return median(times)


def parallel_verifies_per_second(threads: int, seconds: float) -> float:
    """Raw Argon2id verifies/s with one thread per core: what the hardware gives when every core
    hashes at once (concurrent 19 MiB hashes share caches and memory bandwidth)."""
    from argon2 import PasswordHasher

    memory, time_cost, parallelism = argon2_params()
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory, parallelism=parallelism)
    stored = hasher.hash(PASSWORD)
    deadline = time.perf_counter() + seconds

    def work() -> int:
        count = 0
        while time.perf_counter() < deadline:
            hasher.verify(stored, PASSWORD)
            count += 1
        return count

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: work(), range(threads)))
    return total / (time.perf_counter() - started)


def register_users(base: str, count: int) -> list[str]:
    tag = secrets.token_hex(4)
    emails = [f"bench-login-{tag}-{i}@example.com" for i in range(count)]

    def register(email: str) -> None:
        status, body = call_json(
            "POST", f"{base}/auth/register", {"email": email, "password": PASSWORD, "tenant_name": "Bench"}
        )
        if status != 201:
            raise RuntimeError(f"register {email} answered {status}: {body}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(register, emails))
    return emails


def run(options: Options, system: System) -> Section:
    duration = 3.0 if options.quick else 10.0
    rounds = 1 if options.quick else 3
    samples = 10 if options.quick else 30
    memory, time_cost, parallelism = argon2_params()
    log(f"login: Argon2id verify, median of {samples} (m={memory} KiB, t={time_cost}, p={parallelism})")
    verify_s = verify_seconds(samples)
    cores = nproc()
    cap = cores / verify_s
    log(f"login: verify {verify_s * 1000:.1f} ms → cap {cap:.1f} logins/s on {cores} cores")
    raw_parallel = parallel_verifies_per_second(cores, 2.0 if options.quick else 5.0)
    log(f"login: raw Argon2id with {cores} threads: {raw_parallel:.1f} verifies/s")
    emails = register_users(system.base, CLIENTS)
    requests = [
        RequestSpec(
            f"{system.base}/auth/login",
            method="POST",
            body={"email": email, "password": PASSWORD, "device_name": "bench"},
        )
        for email in emails
    ]
    run_load(requests, connections=CLIENTS, duration=1.0, warmup=0.0, generator=options.generator)
    meter = CpuMeter(system)
    cpu: dict[str, float] = {}
    loads: list[Load] = []
    for round_no in range(rounds):
        before = meter.snapshot()
        load = run_load(requests, connections=CLIENTS, duration=duration, warmup=1.0, generator=options.generator)
        for process, seconds in CpuMeter.delta(before, meter.snapshot()).items():
            cpu[process] = cpu.get(process, 0.0) + seconds
        log(
            f"login: round {round_no + 1}/{rounds}: {load.rps:.1f} logins/s, p50 {load.p50_ms:.0f} ms, "
            f"p99 {load.p99_ms:.0f} ms, statuses {load.statuses}, errors {load.errors}"
        )
        loads.append(load)
    single = run_load(requests[:1], connections=1, duration=duration / 2, warmup=0.5, generator=options.generator)
    log(f"login: 1 client: {single.rps:.1f} logins/s, p50 {single.p50_ms:.0f} ms")
    ok = [sum(n for s, n in load.statuses.items() if s == "200") / load.seconds for load in loads]
    logins = median(ok)
    share = logins / cap
    statuses: dict[str, int] = {}
    for load in loads:
        for status, n in load.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    errors = sum(load.errors for load in loads)
    completed = sum(load.completed or load.requests for load in loads)
    section = Section("login", "login — Argon2id-bound logins through the whole system")
    section.facts = [
        f"load generator: {generator_name(options, needs_bodies=True)}; {CLIENTS} connections, one "
        "registered user per connection, each looping `POST /api/v5/auth/login` (successful logins)",
        f"runs: {rounds} x {duration:g} s (1 s warm-up each); medians; Argon2id verify: median of {samples} "
        "single-threaded `argon2.PasswordHasher(...).verify` calls in the bench process, system idle",
    ]
    single_ok = single.statuses.get("200", 0) / single.seconds
    section.body = [
        *table(
            [
                "clients",
                "logins/s (200 only)",
                "p50 ms",
                "p99 ms",
                "statuses (all runs)",
                "Argon2id verify ms",
                "cap = cores / verify",
                "logins/s ÷ cap",
                f"target ≥ {TARGET}",
            ],
            [
                [
                    str(CLIENTS),
                    fmt(logins, 1),
                    fmt(median(x.p50_ms for x in loads), 0),
                    fmt(median(x.p99_ms for x in loads), 0),
                    ", ".join(f"{s}: {n:,}" for s, n in sorted(statuses.items()))
                    + (f", errors: {errors}" if errors else ""),
                    fmt(verify_s * 1000, 1),
                    f"{fmt(cap, 1)} ({cores} cores)",
                    f"**{share:.2f}**",
                    "met" if share >= TARGET else "**not met**",
                ],
                [
                    "1 (one run, for the unloaded latency)",
                    fmt(single_ok, 1),
                    fmt(single.p50_ms, 0),
                    fmt(single.p99_ms, 0),
                    ", ".join(f"{s}: {n:,}" for s, n in sorted(single.statuses.items())),
                    fmt(verify_s * 1000, 1),
                    "—",
                    "—",
                    "—",
                ],
            ],
        ),
        "",
        f"Raw Argon2id with {cores} threads (one per core, nothing else running, same run): "
        f"{fmt(raw_parallel, 1)} verifies/s = {raw_parallel / cap:.2f} of the cap; "
        f"logins/s ÷ raw parallel verifies/s = **{logins / raw_parallel:.2f}**.",
        "",
        f"CPU per login with {CLIENTS} clients (ms; all processes, total first): {cpu_text(cpu, completed)}. "
        f"Argon2id alone is {verify_s * 1000:.1f} ms of it.",
        "",
        f"Argon2id parameters: m={memory} KiB, t={time_cost}, p={parallelism} (the auth service's defaults). "
        "A login is a store read (throttle, user, lockout), one verify on the auth service's hash pool, a "
        "store write (session, refresh token, outbox event), the event publish and an EdDSA signature; the "
        "cap counts only the verify, on every core, while the gateway, NATS, the services and the load "
        "generator share the same cores.",
    ]
    return section
