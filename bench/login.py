"""Login benchmark: concurrent successful logins through the whole system, against what the cores give
when every one of them runs Argon2id with the auth service's parameters (measured in the same run)."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor

from bench.common import Options, Row, log, median, nproc, ratio_text
from bench.loadgen import Load, RequestSpec, run_load
from bench.system import CpuMeter, System, call_json, cpu_text

CLIENTS = 16
PASSWORD = "bench-password-123"
TARGET = 0.8


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


def run(options: Options, system: System) -> tuple[list[Row], list[str]]:
    duration = 3.0 if options.quick else 10.0
    rounds = 1 if options.quick else 3
    raw_seconds = 2.0 if options.quick else 4.0
    memory, time_cost, parallelism = argon2_params()
    cores = nproc()
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
    raw: list[float] = []
    # The raw rate in turns with the logins, so that both meet the same load on a shared machine.
    for round_no in range(rounds):
        raw.append(parallel_verifies_per_second(cores, raw_seconds))
        log(f"login: raw Argon2id with {cores} threads: {raw[-1]:.1f} verifies/s")
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
    succeeded = median((load.requests - load.non_2xx) / load.seconds for load in loads)
    raw_rate = median(raw)
    failed = sum(load.failed for load in loads)
    total = sum(load.requests + load.errors for load in loads)
    completed = sum(load.completed or load.requests for load in loads)
    share = succeeded / raw_rate
    rows = [
        Row(
            key="(a)",
            target=f"raw Argon2id, {cores} threads",
            includes=f"argon2-cffi `verify` with the auth service's parameters (m={memory} KiB, t={time_cost}, "
            f"p={parallelism}), one thread per core in the bench process, nothing else loaded; measured "
            f"{rounds} x {raw_seconds:g} s, in turns with the login runs",
            rate=raw_rate,
            unit="verifies/s",
        ),
        Row(
            key="",
            target=f"`POST /api/v5/auth/login`, {CLIENTS} clients",
            includes=f"{CLIENTS} registered users, the requests cycling through them; a login is a lease "
            "transaction (limits, user), one Argon2id verify on the hash pool, a create transaction (session, "
            "refresh token, lease settled, event staged), the event published from memory and its row cleared, "
            "an EdDSA signature; successful logins only (2xx) count",
            rate=succeeded,
            unit="logins/s",
            p50_ms=median(load.p50_ms for load in loads),
            p99_ms=median(load.p99_ms for load in loads),
            p50_one_ms=single.p50_ms,
            failed=f"{failed} / {total:,}",
            cpu=cpu_text(cpu, completed),
            ratio=ratio_text(share, "(a)"),
            goal=f"≥ {TARGET:g} x (a)",
            verdict="met" if share >= TARGET else "**not met**",
        ),
    ]
    facts = [
        f"logins: {rounds} x {duration:g} s (1 s warm-up each) at {CLIENTS} connections; medians; the p50 at 1 "
        f"connection: one {duration / 2:g} s run of one user",
    ]
    return rows, facts
