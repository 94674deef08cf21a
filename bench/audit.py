"""The audit trail: sustained append rate (events published → records committed, chain and markers
maintained), across 10 tenants and for one tenant (its chain is the serial part), recovery from a
``kill -9`` of the audit process mid-stream (20,000 events: recorded exactly once), then verify and export
speed over the one tenant's chain through the gateway (which verify also proves intact after the kill).

Runs against the supervisor's system (the real ``python -m services.audit`` process). Events are
published to JetStream with up to ``WINDOW`` unacknowledged, so publishing is not what bounds the rate;
the clock runs from the first publish to the moment the audit store holds every record (read from its
store file, as another process may: the embedded store is multi-process).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from functools import partial

import aiohttp
import nats

from bench.common import Options, Row, log
from bench.system import CpuMeter, System, call_json, cpu_text, register_and_login
from contracts.events import Actor, Event
from services.audit import repository as repo
from shared.settings import CommonSettings
from shared.store import Store, open_store

EVENTS = 50_000
CRASH_EVENTS = 20_000
QUICK_EVENTS = 2_000
TENANTS = 10
WINDOW = 256
TIMEOUT_SECONDS = 600.0


async def _total(store: Store, tenants: list[str]) -> int:
    heads = await asyncio.gather(*(store.run(partial(repo.head, chain=t)) for t in tenants))
    return sum(head.seq for head in heads)


def _events(tenants: list[str], count: int) -> list[tuple[str, bytes, str]]:
    """(subject, body, id) of ``count`` events round-robin over the tenants, built before the clock starts
    so the bench's own serialisation does not compete with the service for the two cores."""
    built = []
    for index in range(count):
        event = Event(
            type="session.bench_happened",  # published as the session service (the bus is secured)
            tenant_id=uuid.UUID(tenants[index % len(tenants)]),
            actor=Actor(kind="human", user_id=uuid.uuid4(), ip="10.0.0.1", user_agent="bench"),
            target=f"thing:{index}",
            data={"index": index, "note": "a typical small payload of an event"},
        )
        built.append((event.subject, event.model_dump_json().encode(), str(event.id)))
    return built


async def _publish(system: System, events: list[tuple[str, bytes, str]]) -> float:
    """Publish the events (as the session service) with up to WINDOW unacknowledged; seconds it took."""
    nc = await nats.connect(f"nats://127.0.0.1:{system.nats_port}", **system.connect_options("session"))
    js = nc.jetstream()
    started = time.perf_counter()
    pending: set[asyncio.Future[object]] = set()
    try:
        for subject, body, event_id in events:
            pending.add(asyncio.ensure_future(js.publish(subject, body, headers={"Nats-Msg-Id": event_id})))
            if len(pending) >= WINDOW:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    future.result()
        if pending:
            await asyncio.gather(*pending)
    finally:
        await nc.close()
    return time.perf_counter() - started


async def append_rate(system: System, store: Store, tenants: list[str], count: int) -> tuple[float, float, str]:
    """Records/s from the first publish until the store holds all ``count`` new records."""
    before = await _total(store, tenants)
    events = _events(tenants, count)
    meter = CpuMeter(system)
    cpu_before = meter.snapshot()
    started = time.perf_counter()
    publisher = asyncio.create_task(_publish(system, events))
    while await _total(store, tenants) < before + count:
        if time.perf_counter() - started > TIMEOUT_SECONDS:
            raise TimeoutError(f"only {await _total(store, tenants) - before} of {count} records after the timeout")
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    publish_seconds = await publisher
    cpu = CpuMeter.delta(cpu_before, meter.snapshot())
    return count / elapsed, publish_seconds, cpu_text(cpu, count, unit="µs")


def _audit_pid(system: System) -> int:
    import psutil

    assert system.process is not None
    for child in psutil.Process(system.process.pid).children(recursive=True):
        if "services.audit" in " ".join(child.cmdline()):
            return int(child.pid)
    raise RuntimeError("no audit process under the supervisor")


async def crash_recovery(system: System, store: Store, tenant: str, count: int) -> tuple[float, str]:
    """Publish ``count`` events to one tenant, ``kill -9`` the audit process a quarter of the way in (the
    supervisor restarts it); seconds until every event is recorded, and what was found: exactly ``count``
    new records, or the difference."""
    before = await _total(store, [tenant])
    events = _events([tenant], count)
    started = time.perf_counter()
    publisher = asyncio.create_task(_publish(system, events))
    while await _total(store, [tenant]) < before + count // 4:
        if time.perf_counter() - started > TIMEOUT_SECONDS:
            raise TimeoutError("the audit service made no progress before the kill")
        await asyncio.sleep(0.01)
    os.kill(_audit_pid(system), signal.SIGKILL)
    await publisher
    while await _total(store, [tenant]) < before + count:
        if time.perf_counter() - started > TIMEOUT_SECONDS:
            raise TimeoutError(f"only {await _total(store, [tenant]) - before} of {count} recorded after the kill")
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(35)  # past the default ack wait: a duplicate would have been appended by now
    found = await _total(store, [tenant]) - before
    return elapsed, "exactly all" if found == count else f"{found - count:+d} records"


async def _http_rate(url: str, token: str, export: bool) -> tuple[float, int]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as session:
        started = time.perf_counter()
        async with session.get(url, headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"{url} answered {response.status}: {await response.text()}")
            if export:
                count = 0
                async for line in response.content:
                    count += bool(line.strip())
            else:
                body = await response.json()
                if not body["data"]["ok"]:
                    raise RuntimeError(f"verify failed: {body}")
                count = int(body["data"]["checked"])
        return count / (time.perf_counter() - started), count


async def _run(options: Options, system: System) -> list[Row]:
    count = QUICK_EVENTS if options.quick else EVENTS
    token = register_and_login(system.base, f"audit-bench-{uuid.uuid4().hex[:8]}@example.com", "bench-password-1")
    status, me = call_json("GET", f"{system.base}/users/me", token=token)
    assert status == 200, me
    own_tenant = str(me["data"]["tenant_id"])  # type: ignore[index]
    store = open_store(CommonSettings(data_dir=system.data_dir), "audit")
    try:
        many = [str(uuid.uuid4()) for _ in range(TENANTS)]
        log(f"audit: appending {count:,} events across {TENANTS} tenants")
        many_rate, many_publish, many_cpu = await append_rate(system, store, many, count)
        log(f"audit: appending {count:,} events to one tenant")
        one_rate, one_publish, one_cpu = await append_rate(system, store, [own_tenant], count)
        crash_count = QUICK_EVENTS if options.quick else CRASH_EVENTS
        log(f"audit: kill -9 of the audit process while {crash_count:,} events are published")
        crash_seconds, crash_found = await crash_recovery(system, store, own_tenant, crash_count)
    finally:
        store.close()
    log("audit: verify and export over the one tenant's chain")
    verify_rate, checked = await _http_rate(f"{system.base}/audit/verify", token, export=False)  # also after the kill
    export_rate, exported = await _http_rate(f"{system.base}/audit/export", token, export=True)
    includes = (
        "events published to JetStream (≤{w} unacknowledged) → records committed by the audit service: fetched "
        "in batches from its durable pull consumer, grouped by tenant, hashed in memory, one transaction per "
        "chunk of the batch's tenants (records, idempotency markers, per-user index, head), then acknowledged; "
        "clock from first publish to last commit (publishing took {p:.1f} s)"
    )
    return [
        Row(
            key="audit",
            target=f"audit append, {count:,} events over {TENANTS} tenants",
            includes=includes.format(w=WINDOW, p=many_publish),
            rate=many_rate,
            unit="records/s",
            cpu=many_cpu,
            goal="",
        ),
        Row(
            key="",
            target=f"audit append, {count:,} events to 1 tenant",
            includes=includes.format(w=WINDOW, p=one_publish) + "; one chain: the serial bottleneck",
            rate=one_rate,
            unit="records/s",
            cpu=one_cpu,
            goal="≥ 10,000 records/s",
            verdict="met" if one_rate >= 10_000 else "missed",
        ),
        Row(
            key="",
            target=f"audit after `kill -9`, {crash_count:,} events to 1 tenant",
            includes="the audit process killed a quarter of the way in and restarted by the supervisor; rate from "
            "first publish to last record, so it includes the restart and the ack wait before redeliveries; "
            "checked 35 s later: new records vs events published, and the chain by the verify row below",
            rate=crash_count / crash_seconds,
            unit="records/s",
            failed=crash_found,
        ),
        Row(
            key="",
            target=f"`GET /api/v5/audit/verify`, {checked:,} records",
            includes="the whole chain recomputed in pages of 1,000 and checked against every stored and "
            "stream-published checkpoint; one request",
            rate=verify_rate,
            unit="records/s",
        ),
        Row(
            key="",
            target=f"`GET /api/v5/audit/export`, {exported:,} records",
            includes="NDJSON streamed by the gateway from pages of 1,000 records asked of the audit service",
            rate=export_rate,
            unit="records/s",
        ),
    ]


def run(options: Options, system: System) -> tuple[list[Row], list[str]]:
    rows = asyncio.run(_run(options, system))
    return rows, []
