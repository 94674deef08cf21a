"""Workspace benchmarks: registration → workspace ready on the local backend, and the file monitor
(a burst of file creations; a sustained 1,000 changes/s with its RSS and CPU).

    python -m bench.run --only workspaces [--quick]
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import nats
import orjson
import psutil

from bench.common import Options, Row, log, percentile
from bench.file_events import scratch_nats
from bench.system import System, call_json
from contracts import subjects

REGISTRATIONS, REGISTRATIONS_QUICK = 50, 5
BURST, BURST_QUICK = 10_000, 300
SUSTAINED_RATE = 1000
SUSTAINED_SECONDS, SUSTAINED_SECONDS_QUICK = 10.0, 2.0
READY_GOAL_MS = 1000.0
RSS_GOAL_MB = 60.0


async def _register_to_ready(system: System, count: int) -> tuple[list[float], float]:
    """Seconds from POST /auth/register to the user's workspace.provisioned event, one registration at a time."""
    nc = await nats.connect(f"nats://127.0.0.1:{system.nats_port}", **system.connect_options("gateway"))
    ready: dict[str, float] = {}

    async def on_ready(msg: Any) -> None:
        event = orjson.loads(msg.data)
        ready[event["data"]["user_id"]] = time.perf_counter()

    await nc.subscribe("evt.workspace.provisioned", cb=on_ready)
    tag = secrets.token_hex(4)
    latencies = []
    started = time.perf_counter()
    try:
        for i in range(count):
            body = {"email": f"bench-ws-{tag}-{i}@example.com", "password": "bench-password-123", "name": "Bench"}
            t0 = time.perf_counter()
            status, reply = await asyncio.to_thread(call_json, "POST", f"{system.base}/auth/register", body)
            if status != 201:
                raise RuntimeError(f"register answered {status}: {reply}")
            user_id = str(reply["data"]["user"]["id"])  # type: ignore[index]
            deadline = time.perf_counter() + 30
            while user_id not in ready:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"the workspace of {user_id} was not ready within 30 s")
                await asyncio.sleep(0.002)
            latencies.append(ready[user_id] - t0)
    finally:
        await nc.close()
    return latencies, time.perf_counter() - started


def _start_monitor(
    nats_url: str, root: Path, state: Path, tenant: uuid.UUID, user: uuid.UUID
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CODITECT_NATS_URL": nats_url,
        "CODITECT_TENANT_ID": str(tenant),
        "CODITECT_USER_ID": str(user),
        "CODITECT_WORKSPACE_ROOT": str(root),
        "CODITECT_MONITOR_STATE_DIR": str(state),
        "CODITECT_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "services.monitor"], env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not (state / "monitor.ready").exists():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the monitor did not start")
        time.sleep(0.02)
    return process


async def _monitor(system: System, burst: int, seconds: float) -> tuple[dict[str, float], dict[str, float]]:
    """The monitor alone, on a scratch nats-server of its own (open, with the file stream): what is
    measured is the monitor, not the system's permissions."""
    with scratch_nats() as nats_url:
        setup = await nats.connect(nats_url)
        try:
            await setup.jetstream().add_stream(
                name=subjects.FILE_EVENTS_STREAM, subjects=list(subjects.FILE_EVENTS_SUBJECTS)
            )
        finally:
            await setup.close()
        return await _monitor_on(nats_url, burst, seconds)


async def _monitor_on(nats_url: str, burst: int, seconds: float) -> tuple[dict[str, float], dict[str, float]]:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    from contracts.provisioning import workspace_id

    subject = subjects.file_subject(tenant, user, workspace_id(tenant, user))
    with tempfile.TemporaryDirectory(prefix="coditect-bench-monitor-") as tmp:
        root, state = Path(tmp) / "workspace", Path(tmp) / "state"
        root.mkdir()
        nc = await nats.connect(nats_url)
        received: dict[str, float] = {}
        count = 0

        async def on_change(msg: Any) -> None:
            nonlocal count
            count += 1
            received[orjson.loads(msg.data)["path"]] = time.perf_counter()

        await nc.subscribe(subject, cb=on_change)
        process = _start_monitor(nats_url, root, state, tenant, user)
        meter = psutil.Process(process.pid)
        try:
            # A burst: create files as fast as this process can (an archive being unpacked).
            written: dict[str, float] = {}
            (root / "src").mkdir()
            await asyncio.sleep(0.2)
            count = 0
            first = time.perf_counter()
            for i in range(burst):
                path = f"src/file-{i:05d}.txt"
                (root / path).write_bytes(b"x" * 256)
                written[path] = time.perf_counter()
            deadline = time.perf_counter() + 60
            while len([p for p in written if p in received]) < burst and time.perf_counter() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            last = max((received[p] for p in written if p in received), default=first)
            latencies = sorted((received[p] - written[p]) * 1000 for p in written if p in received)
            burst_result = {
                "events": float(len(latencies)),
                "rate": len(latencies) / max(last - first, 1e-9),
                "p50": percentile(latencies, 0.5) if latencies else float("nan"),
                "p99": percentile(latencies, 0.99) if latencies else float("nan"),
            }
            # Sustained: 1,000 changes/s over distinct files (each modified about once a second).
            received.clear()
            await asyncio.sleep(1.0)
            cpu_before = meter.cpu_times()
            rss_max = 0
            changes = 0
            started = time.perf_counter()
            while (elapsed := time.perf_counter() - started) < seconds:
                due = int(elapsed * SUSTAINED_RATE)
                while changes < due:
                    (root / f"src/file-{changes % 1000:05d}.txt").write_bytes(f"change {changes}".encode())
                    changes += 1
                rss_max = max(rss_max, meter.memory_info().rss)
                await asyncio.sleep(0.005)
            await asyncio.sleep(1.0)
            cpu_after = meter.cpu_times()
            cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
            sustained = {
                "changes": float(changes),
                "rate": changes / seconds,
                "rss_mb": rss_max / 1e6,
                "cpu_percent": 100 * cpu / (seconds + 1.0),
            }
        finally:
            process.terminate()
            process.wait(10)
            await nc.close()
    return burst_result, sustained


def run(options: Options, system: System) -> tuple[list[Row], list[str]]:
    count = REGISTRATIONS_QUICK if options.quick else REGISTRATIONS
    log(f"workspaces: {count} registrations, each until its workspace is ready")
    latencies, took = asyncio.run(_register_to_ready(system, count))
    ordered = sorted(latency * 1000 for latency in latencies)
    p99 = percentile(ordered, 0.99)
    rows = [
        Row(
            "W1",
            "register → workspace ready (local backend)",
            "POST /auth/register until workspace.provisioned is on the bus: auth, the event, provisioning's "
            "consumer, directory, monitor process started and watching; one registration at a time",
            count / took,
            unit="reg/s",
            p50_ms=percentile(ordered, 0.5),
            p99_ms=p99,
            goal=f"p99 < {READY_GOAL_MS:.0f} ms",
            verdict="met" if p99 < READY_GOAL_MS else "missed",
        )
    ]
    burst = BURST_QUICK if options.quick else BURST
    seconds = SUSTAINED_SECONDS_QUICK if options.quick else SUSTAINED_SECONDS
    log(f"monitor: a burst of {burst} file creations, then {SUSTAINED_RATE} changes/s for {seconds:g} s")
    burst_result, sustained = asyncio.run(_monitor(system, burst, seconds))
    rows.append(
        Row(
            "M1",
            f"monitor: burst of {burst:,} file creations",
            "files written as fast as one process can; events/s from the first write to the last event on the "
            "stream; latency from each write to its event at a core-NATS subscriber of the file subject",
            burst_result["rate"],
            unit="events/s",
            p50_ms=burst_result["p50"],
            p99_ms=burst_result["p99"],
            failed=f"{burst - int(burst_result['events'])} / {burst}",
        )
    )
    rows.append(
        Row(
            "M2",
            f"monitor at {SUSTAINED_RATE:,} changes/s",
            f"{seconds:g} s of paced writes over 1,000 files; the monitor's peak RSS and its CPU (one core = 100 %)",
            sustained["rate"],
            unit="changes/s",
            cpu=f"RSS {sustained['rss_mb']:.0f} MB, CPU {sustained['cpu_percent']:.0f} %",
            goal=f"RSS < {RSS_GOAL_MB:.0f} MB",
            verdict="met" if sustained["rss_mb"] < RSS_GOAL_MB else "missed",
        )
    )
    return rows, []
