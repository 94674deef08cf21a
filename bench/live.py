"""Live push benchmark: session events delivered per second to many ``GET /ws`` sockets, and the
gateway's resident memory with them open. The whole system runs under the supervisor (real
processes); this process holds every client socket and publishes straight to JetStream.

    python -m bench.live                                   # 1,000 sockets of 100 users, 20,000 events
    python -m bench.live --sockets 20 --users 4 --events 200   # a smoke run

The clients share this one process (and the machine's cores) with the system: on a small machine
the delivered rate is a floor set as much by the readers as by the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jwt
import orjson

from bench.common import fmt, log, machine, now_text, table
from bench.system import System, register_and_login

PASSWORD = "bench-password-123"


def gateway_process(system: System) -> Any:
    import psutil

    assert system.process is not None
    for child in psutil.Process(system.process.pid).children(recursive=True):
        if "services.gateway" in child.cmdline():
            return child
    raise RuntimeError("no gateway process under the supervisor")


def raise_file_limit() -> int:
    """Sockets are files: lift the soft limit to the hard one (the system's processes inherit it)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def session_event(user: dict[str, str]) -> tuple[str, bytes, str]:
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
        "data": {"user_id": user["user_id"], "session": session},
    }
    return "evt.session.updated", orjson.dumps(event), event_id


async def run(args: argparse.Namespace, system: System) -> list[str]:
    import nats

    gateway = gateway_process(system)
    log(f"registering {args.users} users")
    users: list[dict[str, str]] = []
    for index in range(args.users):
        token = await asyncio.to_thread(
            register_and_login, system.base, f"live-{index}-{uuid.uuid4().hex[:8]}@example.com", PASSWORD
        )
        claims = jwt.decode(token, options={"verify_signature": False})
        users.append({"token": token, "user_id": claims["sub"], "tenant_id": claims["tid"]})

    rss_idle = gateway.memory_info().rss  # after the logins, so only the sockets make the difference
    per_user = args.sockets // args.users
    url = system.base.replace("http://", "ws://") + "/ws"
    counts = [0] * args.users
    done = asyncio.Event()
    expected = args.events * per_user  # events are spread evenly over users

    async def reader(ws: aiohttp.ClientWebSocketResponse, index: int) -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            if '"session.updated"' in message.data:
                counts[index] += 1
                if sum(counts) >= expected:
                    done.set()

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        log(f"opening {per_user * args.users} sockets")
        sockets = []
        for index, user in enumerate(users):
            for _ in range(per_user):
                ws = await session.ws_connect(f"{url}?access_token={user['token']}", heartbeat=None)
                ready = await ws.receive(timeout=30)
                assert ready.type is aiohttp.WSMsgType.TEXT, ready
                assert "live.ready" in ready.data, ready
                sockets.append((ws, index))
        await asyncio.sleep(1.0)
        rss_open = gateway.memory_info().rss
        readers = [asyncio.create_task(reader(ws, index)) for ws, index in sockets]

        # Session events, published as the session service's identity (the bus is secured).
        nc = await nats.connect(
            f"nats://127.0.0.1:{system.nats_port}",
            nkeys_seed=str(system.data_dir / "bus" / "session.nk"),
            inbox_prefix="_INBOX.session",
        )
        js = nc.jetstream()
        log(f"publishing {args.events} events")
        cpu_before = gateway.cpu_times()
        started = time.perf_counter()
        window: list[Any] = []
        for number in range(args.events):
            subject, payload, event_id = session_event(users[number % args.users])
            window.append(js.publish(subject, payload, headers={"Nats-Msg-Id": event_id}))
            if len(window) >= 256:
                await asyncio.gather(*window)
                window = []
        await asyncio.gather(*window)
        published_in = time.perf_counter() - started
        try:
            await asyncio.wait_for(done.wait(), args.timeout)
        except TimeoutError:
            log(f"only {sum(counts)} of {expected} deliveries within {args.timeout}s")
        elapsed = time.perf_counter() - started
        cpu_after = gateway.cpu_times()
        rss_after = gateway.memory_info().rss
        await nc.close()
        for task in readers:
            task.cancel()
        for ws, _ in sockets:
            await ws.close()

    delivered = sum(counts)
    gateway_cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    sockets_open = per_user * args.users
    mib = 1024 * 1024
    return [
        "## Live push (`GET /ws`)",
        "",
        f"- command: `python -m bench.live --sockets {args.sockets} --users {args.users} --events {args.events}`",
        f"- machine: {machine()}; date: {now_text()}",
        "- clients, the publisher and the system share the machine; the gateway has one core at most",
        "",
        *table(
            ["what", "figure"],
            [
                ["sockets / users", f"{sockets_open} / {args.users}"],
                ["events published (JetStream, ≤256 unacked)", f"{args.events} in {published_in:.2f}s"],
                ["deliveries (events x sockets of their user)", f"{delivered} of {expected}"],
                ["delivered per second", fmt(delivered / elapsed)],
                ["gateway CPU per delivery", f"{gateway_cpu / max(delivered, 1) * 1e6:.1f} µs"],
                ["gateway RSS: no sockets", f"{rss_idle / mib:.1f} MiB"],
                [f"gateway RSS: {sockets_open} sockets open", f"{rss_open / mib:.1f} MiB"],
                ["gateway RSS per socket", f"{(rss_open - rss_idle) / max(sockets_open, 1) / 1024:.1f} KiB"],
                ["gateway RSS after the burst", f"{rss_after / mib:.1f} MiB"],
            ],
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for every delivery")
    args = parser.parse_args(argv)
    if args.sockets % args.users or args.sockets // args.users > 16:
        parser.error("sockets must be a multiple of users, at most 16 per user (CODITECT_LIVE_MAX_SOCKETS_PER_USER)")
    log(f"file limit raised to {raise_file_limit()}")
    system = System()
    system.start()
    try:
        lines = asyncio.run(run(args, system))
    finally:
        system.stop()
        system.cleanup()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
