"""Where the time from ``POST /auth/register`` to ``workspace.provisioned`` goes (bench row W1), step by step.

    flock /tmp/bench.lock python -m bench.ready_path [--count 20]

Starts the system as shipped, registers users one at a time and takes, per registration, the times of
what can be seen from outside: the register reply (auth, Argon2id included), ``workspace.requested`` on
the bus (the event, provisioning's consumer, the first transaction), the monitor's seed file written
(claim, directory, key issued), its lock file created (the monitor process has its workspace: a spare
handed it, or a new process done with its imports), its ready file (watching) and ``workspace.provisioned``
(the record's transaction and the outbox). File times are the file system's clock, the rest this
process's wall clock; medians and p90 of each step in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import nats
import orjson

from bench.common import log, percentile
from bench.system import System, call_json
from contracts.ids import workspace_id

STEPS = (
    ("registered", "register reply (auth, Argon2id)"),
    ("requested", "workspace.requested on the bus"),
    ("seed", "claimed, directory made, key issued (seed file)"),
    ("locked", "monitor has its workspace (lock file)"),
    ("watching", "monitor watching (ready file)"),
    ("provisioned", "workspace.provisioned on the bus"),
)


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else float("nan")


async def trace(system: System, count: int) -> list[dict[str, float]]:
    nc = await nats.connect(f"nats://127.0.0.1:{system.nats_port}", **system.connect_options("gateway"))
    seen: dict[tuple[str, str], float] = {}

    async def on_event(msg: Any) -> None:
        event = orjson.loads(msg.data)
        seen[(event["type"], event["data"]["user_id"])] = time.time()

    await nc.subscribe("evt.workspace.requested", cb=on_event)
    await nc.subscribe("evt.workspace.provisioned", cb=on_event)
    tag = secrets.token_hex(4)
    traces = []
    try:
        for i in range(count):
            await asyncio.sleep(1.0)  # the next spare (or nothing) settles: one registration at a time
            body = {"email": f"bench-trace-{tag}-{i}@example.com", "password": "bench-password-123", "name": "B"}
            start = time.time()
            status, reply = await asyncio.to_thread(call_json, "POST", f"{system.base}/auth/register", body)
            registered = time.time()
            if status != 201:
                raise RuntimeError(f"register answered {status}: {reply}")
            data: Any = reply["data"]
            user, tenant = str(data["user"]["id"]), str(data["tenant"]["id"])
            deadline = time.monotonic() + 30
            while ("workspace.provisioned", user) not in seen:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the workspace of {user} was not ready within 30 s")
                await asyncio.sleep(0.002)
            state = system.data_dir / "monitors" / str(workspace_id(UUID(tenant), UUID(user)))
            stamps = {
                "registered": registered,
                "requested": seen.get(("workspace.requested", user), float("nan")),
                "seed": _mtime(state / "nats.nk"),
                "locked": _mtime(state / "monitor.lock"),
                "watching": _mtime(state / "monitor.ready"),
                "provisioned": seen[("workspace.provisioned", user)],
            }
            traces.append({name: (stamp - start) * 1000 for name, stamp in stamps.items()})
    finally:
        await nc.close()
    return traces


def report(traces: list[dict[str, float]]) -> None:
    print(f"{len(traces)} registrations; load average {os.getloadavg()[0]:.2f}")
    print(f"{'step':52} {'at p50':>8} {'step p50':>9} {'step p90':>9}")
    before = dict.fromkeys(range(len(traces)), 0.0)
    for name, what in STEPS:
        at = sorted(t[name] for t in traces)
        steps = sorted(t[name] - before[i] for i, t in enumerate(traces))
        print(f"{what:52} {statistics.median(at):8.1f} {statistics.median(steps):9.1f} {percentile(steps, 0.9):9.1f}")
        before = {i: t[name] for i, t in enumerate(traces)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the system (repeatable)")
    args = parser.parse_args()
    system = System(dict(item.split("=", 1) for item in args.env))
    try:
        system.start()
        log(f"tracing {args.count} registrations")
        report(asyncio.run(trace(system, args.count)))
    finally:
        system.stop()
        system.cleanup()


if __name__ == "__main__":
    main()
