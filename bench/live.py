"""Live push benchmark: session events fanned out to many ``GET /ws`` sockets — delivered per second,
the delay from publish to a client's receive (p50/p99), the gateway's CPU per delivery and its
resident memory per open socket. Part of ``python -m bench.run`` (``--only live``), or alone:

    python -m bench.live                                       # 1,000 sockets of 100 users
    python -m bench.live --sockets 20 --users 4 --events 200   # a smoke run

The system runs under the supervisor (real processes); this process holds every client socket and
publishes straight to JetStream, so clients, publisher and system share the machine's cores: on a
small machine the delivered rate is a floor set as much by the readers as by the gateway.

Two phases on the same sockets: *paced* — events published at a steady rate well below saturation,
so the latency is the push path's own; *burst* — events published as fast as JetStream acknowledges
them (≤ 256 unacknowledged), so the rate is the most the gateway delivered and the latency includes
the queueing a burst causes. An event's publish time travels in its ``data`` (one clock: this process).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jwt
import orjson

from bench.common import Options, Row, fmt, log, percentile
from bench.system import System, register_and_login

PASSWORD = "bench-password-123"
PUBLISH_WINDOW = 256


@dataclass
class Size:
    sockets: int
    users: int
    paced_rate: float  # events per second in the paced phase
    paced_seconds: float
    burst_events: int
    timeout: float = 60.0


FULL = Size(sockets=1000, users=100, paced_rate=100.0, paced_seconds=10.0, burst_events=20_000)
QUICK = Size(sockets=100, users=10, paced_rate=50.0, paced_seconds=2.0, burst_events=1_000, timeout=30.0)


@dataclass
class Phase:
    published: int = 0
    expected: int = 0
    delivered: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = float("nan")
    cpu_seconds: float = float("nan")
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def received(self, sent_at: float) -> None:
        self.delivered += 1
        self.latencies.append(time.time() - sent_at)
        if self.delivered >= self.expected > 0:
            self.done.set()


class Gateways:
    """Every gateway process under the supervisor (they share the port), summed."""

    def __init__(self, system: System) -> None:
        import psutil

        assert system.process is not None
        children = psutil.Process(system.process.pid).children(recursive=True)
        self.processes = [child for child in children if "services.gateway" in child.cmdline()]
        if not self.processes:
            raise RuntimeError("no gateway process under the supervisor")

    def rss(self) -> float:
        return float(sum(process.memory_info().rss for process in self.processes))

    def cpu_seconds(self) -> float:
        return sum(times.user + times.system for times in (process.cpu_times() for process in self.processes))


def raise_file_limit() -> int:
    """Sockets are files: lift the soft limit to the hard one (a system started afterwards inherits it)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def session_event(user: dict[str, str], phase: str) -> tuple[str, bytes, str]:
    now = datetime.now(UTC).isoformat()
    event_id = str(uuid.uuid4())
    session = {
        "id": str(uuid.uuid4()),
        "tenant_id": user["tenant_id"],
        "user_id": user["user_id"],
        "name": "bench",
        "workspace_path": None,
        "status": "active",
        "parent_session_id": None,
        "version": 2,
        "created_at": now,
        "updated_at": now,
        "last_accessed_at": now,
    }
    event = {
        "id": event_id,
        "type": "session.updated",
        "tenant_id": user["tenant_id"],
        "occurred_at": now,
        "actor": {"kind": "human", "user_id": user["user_id"]},
        "target": f"session:{session['id']}",
        "outcome": "success",
        "data": {"user_id": user["user_id"], "session": session, "bench": {"phase": phase, "sent_at": time.time()}},
    }
    return "evt.session.updated", orjson.dumps(event), event_id


async def measure(size: Size, system: System) -> tuple[dict[str, Phase], dict[str, float]]:
    import nats

    gateway = Gateways(system)
    log(f"live: registering {size.users} users")
    users: list[dict[str, str]] = []
    for index in range(size.users):
        token = await asyncio.to_thread(
            register_and_login, system.base, f"live-{index}-{uuid.uuid4().hex[:8]}@example.com", PASSWORD
        )
        claims = jwt.decode(token, options={"verify_signature": False})
        users.append({"token": token, "user_id": claims["sub"], "tenant_id": claims["tid"]})

    per_user = size.sockets // size.users
    url = system.base.replace("http://", "ws://") + "/ws"
    phases = {"paced": Phase(), "burst": Phase()}
    memory: dict[str, float] = {"rss_idle": gateway.rss()}  # after the logins

    async def reader(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            body = orjson.loads(message.data)
            bench = body.get("data", {}).get("bench") if body.get("type") == "session.updated" else None
            if bench is not None:
                phases[bench["phase"]].received(bench["sent_at"])

    async def publish(js: Any, phase_name: str, count: int, rate: float | None) -> None:
        phase = phases[phase_name]
        phase.expected = count * per_user
        cpu_before = gateway.cpu_seconds()
        started = time.perf_counter()
        window: list[Any] = []
        for number in range(count):
            if rate is not None:  # paced: the next event leaves at its slot
                delay = started + number / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            subject, payload, event_id = session_event(users[number % size.users], phase_name)
            window.append(js.publish(subject, payload, headers={"Nats-Msg-Id": event_id}))
            if len(window) >= (1 if rate is not None else PUBLISH_WINDOW):
                await asyncio.gather(*window)
                window = []
        await asyncio.gather(*window)
        phase.published = count
        try:
            await asyncio.wait_for(phase.done.wait(), size.timeout)
        except TimeoutError:
            log(f"live: {phase_name}: only {phase.delivered} of {phase.expected} deliveries within {size.timeout}s")
        phase.seconds = time.perf_counter() - started
        phase.cpu_seconds = gateway.cpu_seconds() - cpu_before

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        log(f"live: opening {per_user * size.users} sockets")
        sockets = []
        for user in users:
            for _ in range(per_user):
                ws = await session.ws_connect(f"{url}?access_token={user['token']}", heartbeat=None)
                ready = await ws.receive(timeout=30)
                if ready.type is not aiohttp.WSMsgType.TEXT or "live.ready" not in ready.data:
                    raise RuntimeError(f"no live.ready on a new socket: {ready}")
                sockets.append(ws)
        await asyncio.sleep(1.0)
        memory["rss_open"] = gateway.rss()
        readers = [asyncio.create_task(reader(ws)) for ws in sockets]
        # Session events, published as the session service's identity (the bus is secured).
        nc = await nats.connect(
            f"nats://127.0.0.1:{system.nats_port}",
            nkeys_seed=str(system.data_dir / "bus" / "session.nk"),
            inbox_prefix="_INBOX.session",
        )
        try:
            js = nc.jetstream()
            count = max(1, round(size.paced_rate * size.paced_seconds))
            log(f"live: paced: {count} events at {size.paced_rate:g}/s")
            await publish(js, "paced", count, size.paced_rate)
            log(f"live: burst: {size.burst_events} events")
            await publish(js, "burst", size.burst_events, None)
            memory["rss_after"] = gateway.rss()
        finally:
            await nc.close()
            for task in readers:
                task.cancel()
            for ws in sockets:
                await ws.close()
    return phases, memory


def rows(size: Size, phases: dict[str, Phase], memory: dict[str, float]) -> tuple[list[Row], list[str]]:
    sockets = size.sockets // size.users * size.users
    found: list[Row] = []
    for name, phase in phases.items():
        latencies = sorted(phase.latencies)
        what = (
            f"{phase.published:,} events at {size.paced_rate:g}/s"
            if name == "paced"
            else f"{phase.published:,} events as fast as JetStream acknowledges them (≤ {PUBLISH_WINDOW} unacked)"
        )
        found.append(
            Row(
                key="",
                target=f"`GET /ws` fan-out, {name}: {sockets:,} sockets of {size.users} users",
                includes=f"{what}, each to the {sockets // size.users} sockets of its user; p50/p99: publish → a "
                "client's receive",
                rate=phase.delivered / phase.seconds if phase.seconds == phase.seconds else float("nan"),
                unit="deliveries/s",
                p50_ms=1000 * percentile(latencies, 0.5),
                p99_ms=1000 * percentile(latencies, 0.99),
                failed=f"{phase.expected - phase.delivered} / {phase.expected:,}",
                cpu=f"gateway {phase.cpu_seconds / max(phase.delivered, 1) * 1e6:.1f} µs per delivery",
            )
        )
    mib = 1024 * 1024
    per_socket = (memory["rss_open"] - memory["rss_idle"]) / max(sockets, 1) / 1024
    found.append(
        Row(
            key="",
            target=f"gateway RSS with {sockets:,} sockets open",
            includes=f"gateway RSS {memory['rss_idle'] / mib:.1f} MiB with no socket, {memory['rss_open'] / mib:.1f} "
            f"MiB with {sockets:,} open, {memory.get('rss_after', float('nan')) / mib:.1f} MiB after the burst",
            rate=per_socket,
            unit="KiB per socket",
        )
    )
    facts = [
        f"live push: {sockets:,} WebSocket clients in the bench's process (aiohttp), events published to JetStream "
        "from it; the clients' reading shares the cores with the gateway"
    ]
    return found, facts


def run(options: Options, system: System) -> tuple[list[Row], list[str]]:
    size = QUICK if options.quick else FULL
    phases, memory = asyncio.run(measure(size, system))
    for row in (found := rows(size, phases, memory))[0]:
        log(f"live: {row.target}: {fmt(row.rate)} {row.unit}, p50 {fmt(row.p50_ms, 1)} ms, p99 {fmt(row.p99_ms, 1)} ms")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=FULL.sockets)
    parser.add_argument("--users", type=int, default=FULL.users)
    parser.add_argument("--events", type=int, default=FULL.burst_events, help="events of the burst")
    parser.add_argument("--rate", type=float, default=FULL.paced_rate, help="events per second when paced")
    parser.add_argument("--seconds", type=float, default=FULL.paced_seconds, help="length of the paced phase")
    parser.add_argument("--timeout", type=float, default=FULL.timeout, help="seconds to wait for every delivery")
    args = parser.parse_args(argv)
    if args.sockets % args.users or args.sockets // args.users > 16:
        parser.error("sockets must be a multiple of users, at most 16 per user (CODITECT_LIVE_MAX_SOCKETS_PER_USER)")
    size = Size(args.sockets, args.users, args.rate, args.seconds, args.events, args.timeout)
    log(f"file limit raised to {raise_file_limit()}")
    system = System()
    system.start()
    try:
        phases, memory = asyncio.run(measure(size, system))
    finally:
        system.stop()
        system.cleanup()
    found, _ = rows(size, phases, memory)
    for row in found:
        print(
            f"{row.target}: {fmt(row.rate, 1)} {row.unit}; p50 {fmt(row.p50_ms, 1)} ms, p99 {fmt(row.p99_ms, 1)} ms; "
            f"missed {row.failed or 'n/a'}; {row.cpu or row.includes}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
