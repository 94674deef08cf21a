"""File-event benchmark: sustained end-to-end ingest (a monitor's JetStream publishes → committed in
the file-event service's store and acknowledged) beside the raw JetStream async publish rate of the
same publisher in the same run, and the latency of one 100-event page of ``GET /files/events``.

End to end is timed from the first publish to the moment the ingest consumer's acknowledged floor
reaches the last message: the service acknowledges only after its transaction committed, so that
moment is "everything stored". The store is then read back in full to check nothing was lost or
duplicated. The raw rate publishes the same bodies to a scratch stream nobody consumes.

The system's bus is secured: the events are published with the key provisioning issued to the
workspace's monitor (the workspace is provisioned on demand first), progress is read as the file-event
identity, and the raw rate runs on a scratch nats-server without permissions on the same machine (no identity may
create a stream of its own on the system's).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import nats
import orjson
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from bench.common import Options, Row, free_port, log, ratio_text
from bench.loadgen import RequestSpec, run_load
from bench.system import CpuMeter, System, call_json, cpu_text, register_and_login
from contracts import subjects
from contracts.provisioning import workspace_id
from shared.busauth import public_key_of
from shared.monitorcreds import MonitorCredentials, monitor_identity
from shared.supervisor import nats_server_binary, wait_port

EVENTS = 100_000
QUICK_EVENTS = 2_000
PENDING = 256  # unacknowledged async publishes in flight (STACK-NOTES: the ~60,000 msg/s setting)
TARGET = 0.4
RAW_STREAM = "BENCH_RAW_FILE_EVENTS"
RAW_SUBJECT = "benchraw.files"
DURABLE = "file_event-ingest"
PAGE = 100


def bodies(count: int) -> list[tuple[str, bytes]]:
    """(event id, JSON) of ``count`` monitor-style changes: a mix of kinds over a few thousand paths."""
    base = datetime.now(UTC)
    out = []
    for i in range(count):
        event_id = str(uuid.uuid4())
        kind = "created" if i % 10 == 0 else "modified"
        change = {
            "event_id": event_id,
            "path": f"src/module_{i % 200:03}/file_{i % 5000:05}.py",
            "kind": kind,
            "size": 100 + i % 9000,
            "sha256": secrets.token_hex(32),
            "actor": "claude-code" if i % 3 else "user",
            "occurred_at": (base + timedelta(microseconds=i)).isoformat(),
        }
        out.append((event_id, orjson.dumps(change)))
    return out


async def publish_all(js: JetStreamContext, subject: str, items: list[tuple[str, bytes]]) -> float:
    """Publish every body (``Nats-Msg-Id`` = event id) with up to PENDING acks outstanding; seconds taken."""
    started = time.perf_counter()
    futures = []
    for event_id, body in items:
        futures.append(await js.publish_async(subject, body, headers={"Nats-Msg-Id": event_id}))
        if len(futures) >= 4 * PENDING:
            await asyncio.gather(*futures)
            futures.clear()
    await asyncio.gather(*futures)
    return time.perf_counter() - started


async def raw_rate(url: str, items: list[tuple[str, bytes]]) -> float:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=PENDING)
        await js.add_stream(StreamConfig(name=RAW_STREAM, subjects=[RAW_SUBJECT]))
        try:
            seconds = await publish_all(js, RAW_SUBJECT, items)
        finally:
            await js.delete_stream(RAW_STREAM)
        return len(items) / seconds
    finally:
        await nc.close()


@contextlib.contextmanager
def scratch_nats() -> Iterator[str]:
    """A throwaway nats-server with JetStream and no permissions, for the raw reference."""
    port, store = free_port(), tempfile.mkdtemp(prefix="bench-raw-nats-")
    process = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_port(port, 10):
            raise RuntimeError("the scratch nats-server did not start")
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(store, ignore_errors=True)


async def connect_monitor(url: str, credentials: MonitorCredentials) -> NatsClient:
    for _ in range(100):  # the server applies its reload within moments
        with contextlib.suppress(nats.errors.Error):
            return await nats.connect(url, connect_timeout=2, **credentials.connect_options())
        await asyncio.sleep(0.05)
    raise RuntimeError("the monitor's credentials were not accepted")


async def end_to_end(
    url: str, credentials: MonitorCredentials, observer_seed: str, items: list[tuple[str, bytes]]
) -> tuple[float, float]:
    """(events/s from the first publish to the last commit, publishing events/s)."""
    nc = await connect_monitor(url, credentials)
    observer = await nats.connect(url, nkeys_seed=observer_seed, inbox_prefix="_INBOX.file_event")
    try:
        js = nc.jetstream(publish_async_max_pending=PENDING)
        watch = observer.jetstream()
        before = await watch.stream_info(subjects.FILE_EVENTS_STREAM)
        last = (before.state.last_seq or 0) + len(items)
        started = time.perf_counter()
        published = await publish_all(js, credentials.subject, items)
        while True:
            info = await watch.consumer_info(subjects.FILE_EVENTS_STREAM, DURABLE)
            if (info.ack_floor.stream_seq or 0) >= last:
                break
            await asyncio.sleep(0.02)
        return len(items) / (time.perf_counter() - started), len(items) / published
    finally:
        await nc.close()
        await observer.close()


def stored_ids(base: str, token: str) -> tuple[list[str], list[str]]:
    """Every stored event id (in log order) and a cursor at the start of every page of PAGE."""
    ids: list[str] = []
    cursors: list[str] = []
    cursor = None
    while True:
        query = f"limit=500&cursor={cursor}" if cursor else "limit=500"
        status, body = call_json("GET", f"{base}/files/events?{query}", token=token)
        if status != 200:
            raise RuntimeError(f"GET /files/events answered {status}: {body}")
        data: Any = body["data"]
        ids += [item["event_id"] for item in data["items"]]
        cursor = data["next_cursor"]
        if cursor is None:
            break
    # Page starts for the query benchmark: walk pages of PAGE over the first part of the log.
    cursor = None
    for _ in range(50):
        status, body = call_json(
            "GET", f"{base}/files/events?limit={PAGE}" + (f"&cursor={cursor}" if cursor else ""), token=token
        )
        data = body["data"]
        if cursor:
            cursors.append(cursor)
        cursor = data["next_cursor"]
        if cursor is None:
            break
    return ids, cursors


def workspace_monitor_credentials(system: System, token: str, tenant: UUID, user: UUID) -> MonitorCredentials:
    """Publish as the workspace's monitor does: the workspace is provisioned (the request-path system
    provisions on demand), and its monitor's key, issued by provisioning, is read from the monitor's
    state folder (a 0600 file: this bench runs as the same user as the system)."""
    status, body = call_json("POST", f"{system.base}/workspaces/me/reprovision", token=token)
    if status not in (200, 202):
        raise RuntimeError(f"POST /workspaces/me/reprovision answered {status}: {body}")
    deadline = time.monotonic() + 30
    while True:
        status, body = call_json("GET", f"{system.base}/workspaces/me", token=token)
        workspace_status: Any = body
        if status == 200 and workspace_status["data"]["status"] == "ready":
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the bench's workspace did not become ready: {status} {body}")
        time.sleep(0.1)
    workspace = workspace_id(tenant, user)
    seed = (system.data_dir / "monitors" / str(workspace) / "nats.nk").read_bytes().strip()
    return MonitorCredentials(
        identity=monitor_identity(workspace),
        subject=subjects.file_subject(tenant, user, workspace),
        seed=seed.decode(),
        public_key=public_key_of(seed),
    )


def run(options: Options, system: System) -> tuple[list[Row], list[str]]:
    count = QUICK_EVENTS if options.quick else EVENTS
    url = f"nats://127.0.0.1:{system.nats_port}"
    token = register_and_login(system.base, f"bench-files-{secrets.token_hex(4)}@example.com", "bench-password-123")
    status, who = call_json("GET", f"{system.base}/auth/whoami", token=token)
    if status != 200:
        raise RuntimeError(f"GET /auth/whoami answered {status}: {who}")
    caller: Any = who["data"]
    tenant, user = UUID(caller["tenant_id"]), UUID(caller["user_id"])

    with scratch_nats() as scratch:
        raw = asyncio.run(raw_rate(scratch, bodies(count)))
    log(f"files: raw JetStream async publish: {raw:,.0f} msg/s over {count:,}")
    items = bodies(count)
    meter = CpuMeter(system)
    before = meter.snapshot()
    bus_dir = system.data_dir / "bus"
    credentials = workspace_monitor_credentials(system, token, tenant, user)
    ingest, publishing = asyncio.run(end_to_end(url, credentials, str(bus_dir / "file_event.nk"), items))
    cpu = CpuMeter.delta(before, meter.snapshot())
    log(f"files: end to end {ingest:,.0f} events/s (publishing ran at {publishing:,.0f} msg/s)")

    ids, cursors = stored_ids(system.base, token)
    expected = {event_id for event_id, _ in items}
    lost = len(expected - set(ids))
    duplicated = len(ids) - len(set(ids))
    log(f"files: stored {len(ids):,}: {lost} lost, {duplicated} duplicated")

    bearer = {"Authorization": f"Bearer {token}"}
    pages = [RequestSpec(f"{system.base}/files/events?limit={PAGE}&cursor={c}", headers=bearer) for c in cursors]
    pages = pages or [RequestSpec(f"{system.base}/files/events?limit={PAGE}", headers=bearer)]
    query = run_load(
        pages, connections=4, duration=2.0 if options.quick else 5.0, warmup=0.5, generator=options.generator
    )
    log(f"files: 100-event page: {query.rps:,.0f} req/s, p50 {query.p50_ms:.1f} ms, p99 {query.p99_ms:.1f} ms")

    share = ingest / raw
    rows = [
        Row(
            key="(f)",
            target="raw JetStream async publish",
            includes=f"nats-py `publish_async` with {PENDING} acks in flight, Nats-Msg-Id set, {count:,} file-change "
            "bodies (about 250 bytes) to a scratch stream nobody consumes; the same publisher as the next row",
            rate=raw,
            unit="msg/s",
        ),
        Row(
            key="",
            target=f"file events end to end ({count:,})",
            includes="the same publisher on a workspace subject → the file-event service's durable pull consumer "
            "(batches of up to 1,000, one transaction each: marker, log, history per event, metadata per path, one "
            "staged file.changed per workspace) → acknowledged after commit; timed to the last acknowledgement; "
            f"read back: {lost} lost, {duplicated} duplicated",
            rate=ingest,
            unit="events/s",
            failed=f"{lost + duplicated} / {count:,}",
            cpu=cpu_text(cpu, count, unit="µs"),
            ratio=ratio_text(share, "(f)"),
            goal=f"≥ {TARGET:g} x (f), nothing lost",
            verdict="met" if share >= TARGET and lost == duplicated == 0 else "**not met**",
        ),
        Row(
            key="",
            target=f"`GET /api/v5/files/events?limit={PAGE}`, 4 connections",
            includes="one page of 100 events after a cursor (pages across the stored log): edge, bus, one store "
            "range read, 100 event models",
            rate=query.rps,
            p50_ms=query.p50_ms,
            p99_ms=query.p99_ms,
            failed=f"{query.failed} / {query.requests + query.errors:,}",
        ),
    ]
    facts = [
        f"file events: {count:,} events published on one workspace subject; the stream's file store at its default sync"
    ]
    return rows, facts
