"""The monitor on its own (as a sidecar runs it): settings from the environment, changes made while it
was stopped reported when it starts again, its actor and ignore patterns, one monitor per workspace."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from uuid import uuid4

import pytest

from contracts import subjects
from contracts.provisioning import workspace_id
from services.monitor.app import EXIT_LOCKED
from tests.provisioning.helpers import file_events, wait_file_events
from tests.support import NatsServer


@pytest.fixture
async def streams(nats: NatsServer) -> NatsServer:
    """The file-event stream exists (services create it; a monitor may not)."""
    from shared.bus import ensure_streams, make_broker

    broker = make_broker(nats.url, "test-streams")
    await broker.connect()
    await ensure_streams(broker)
    await broker.stop()
    return nats


class Monitor:
    def __init__(self, nats_url: str, tmp: Path, **extra: str) -> None:
        self.tenant, self.user = uuid4(), uuid4()
        self.root = tmp / "workspace"
        self.state = tmp / "state"
        self.root.mkdir(parents=True, exist_ok=True)
        self.subject = subjects.file_subject(self.tenant, self.user, workspace_id(self.tenant, self.user))
        self.env = {
            **os.environ,
            "CODITECT_NATS_URL": nats_url,
            "TENANT_ID": str(self.tenant),  # the pod's variable names work too
            "USER_ID": str(self.user),
            "CODITECT_WORKSPACE_ROOT": str(self.root),
            "CODITECT_MONITOR_STATE_DIR": str(self.state),
            "CODITECT_LOG_LEVEL": "WARNING",
            **extra,
        }
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, command: Sequence[str] = ("-m", "services.monitor")) -> subprocess.Popen[bytes]:
        (self.state / "monitor.ready").unlink(missing_ok=True)
        process = subprocess.Popen([sys.executable, *command], env=self.env)
        self.processes.append(process)
        return process

    def wait_watching(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 20
        ready = self.state / "monitor.ready"
        while not (ready.exists() and ready.read_text() == str(process.pid)):
            assert process.poll() is None and time.monotonic() < deadline, "the monitor did not start"
            time.sleep(0.02)

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        process.terminate()
        assert process.wait(10) == 0, "a SIGTERM ends the monitor cleanly"


@pytest.fixture
def monitor(streams: NatsServer, tmp_path: Path) -> Iterator[Monitor]:
    running = Monitor(streams.url, tmp_path, CODITECT_MONITOR_ACTOR="claude-code", CODITECT_MONITOR_IGNORE='["*.log"]')
    yield running
    for process in running.processes:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_changes_made_while_the_monitor_was_stopped_are_reported_when_it_starts(
    monitor: Monitor, nats: NatsServer
) -> None:
    first = monitor.start()
    monitor.wait_watching(first)
    (monitor.root / "kept.txt").write_text("v1")
    (monitor.root / "doomed.txt").write_text("bye")
    (monitor.root / "noise.log").write_text("ignored by the pattern")
    await wait_file_events(nats.url, monitor.subject, lambda evs: len(evs) == 2)
    monitor.stop(first)

    (monitor.root / "kept.txt").write_text("version two")
    (monitor.root / "doomed.txt").unlink()
    (monitor.root / "new").mkdir()
    (monitor.root / "new" / "file.txt").write_text("made while nobody watched")
    second = monitor.start()
    monitor.wait_watching(second)
    events = await wait_file_events(nats.url, monitor.subject, lambda evs: len(evs) >= 6)
    await asyncio.sleep(0.5)
    events = await file_events(nats.url, monitor.subject)
    assert sorted((e["kind"], e["path"]) for e in events[2:]) == [
        ("created", "new"),
        ("created", "new/file.txt"),
        ("deleted", "doomed.txt"),
        ("modified", "kept.txt"),
    ]
    assert {e["actor"] for e in events} == {"claude-code"}
    assert not any(e["path"].endswith(".log") for e in events)
    # Nothing changed since: a third start reports nothing.
    monitor.stop(second)
    third = monitor.start()
    monitor.wait_watching(third)
    await asyncio.sleep(1.0)
    assert len(await file_events(nats.url, monitor.subject)) == len(events)


async def test_a_second_monitor_of_the_same_workspace_steps_aside(monitor: Monitor) -> None:
    first = monitor.start()
    monitor.wait_watching(first)
    second = monitor.start()
    assert second.wait(20) == EXIT_LOCKED
    assert first.poll() is None


async def test_a_burst_that_overflows_the_kernels_queue_loses_no_file(monitor: Monitor, nats: NatsServer) -> None:
    """20,000 files written as fast as one process can: more than inotify's default queue (16,384 events)
    holds, so the kernel drops events; the monitor re-reads the tree and reports each file once."""
    import nats as nats_client

    count = 20_000
    process = monitor.start()
    monitor.wait_watching(process)
    for index in range(count):
        (monitor.root / f"f{index:05d}").write_bytes(b"x")
    nc = await nats_client.connect(nats.url)
    try:
        js = nc.jetstream()
        stored = 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            info = await js.stream_info(subjects.FILE_EVENTS_STREAM, subjects_filter=monitor.subject)
            stored = (info.state.subjects or {}).get(monitor.subject, 0)
            if stored >= count:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # nothing more (no duplicate) arrives after the last one
        info = await js.stream_info(subjects.FILE_EVENTS_STREAM, subjects_filter=monitor.subject)
        stored = (info.state.subjects or {}).get(monitor.subject, 0)
    finally:
        await nc.close()
    assert stored == count


# What the monitor must not load: the services' stack. The monitor runs once per workspace with a budget of
# 60 MB resident at 1,000 changes/s (bench row M2); it had 76 MB, most of it modules it never used.
SERVICE_STACK = (
    "aiohttp",  # nats-py's WebSocket transport (the monitor connects over nats://): about 9 MB
    "opentelemetry",  # the services' tracing, through shared.telemetry: with psutil, about 2 MB
    "psutil",
    "pydantic",  # the contract models: about 12 MB and 0.7 s of start-up; events are written by encode.py
    "pydantic_settings",
    "faststream",
    "apsw",
    "fastapi",
    "shared.telemetry",
    "shared.bus",
    "shared.service",
    "shared.store",
)


MODULES = "json.dumps([name for name, module in sys.modules.items() if module])"  # None: an import blocked


def _loaded(names: list[str]) -> list[str]:
    return sorted(heavy for heavy in SERVICE_STACK if any(n == heavy or n.startswith(heavy + ".") for n in names))


def test_the_monitor_entry_point_imports_none_of_the_service_stack() -> None:
    code = f"import json, sys\nimport services.monitor.__main__\nprint({MODULES})"
    names = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout)
    assert "services.monitor.app" in names and "nats" in names  # the monitor itself was imported
    assert _loaded(names) == []


async def test_a_working_monitor_loads_none_of_the_service_stack(
    monitor: Monitor, nats: NatsServer, tmp_path: Path
) -> None:
    """What it imports while it runs (connecting, publishing, stopping), not only at start-up."""
    report = tmp_path / "modules.json"
    code = (
        "import atexit, json, runpy, sys\n"
        f"atexit.register(lambda: open({str(report)!r}, 'w').write({MODULES}))\n"
        "runpy.run_module('services.monitor', run_name='__main__', alter_sys=True)\n"
    )
    process = monitor.start(("-c", code))
    monitor.wait_watching(process)
    (monitor.root / "a.txt").write_text("hello")
    await wait_file_events(nats.url, monitor.subject, lambda evs: len(evs) == 1)
    monitor.stop(process)
    names = json.loads(report.read_text())
    assert "services.monitor.publisher" in names and "nats.js" in names
    assert _loaded(names) == []


async def test_a_directory_move_reports_the_directory_and_each_file_under_it(
    monitor: Monitor, nats: NatsServer
) -> None:
    """What the file-event service gets for ``mv a/dir b/dir``: watchdog pairs inotify's move of the
    directory and adds a move for every entry under it (it walks the destination), so the service sees
    the directory's move and its children's; it must be right without the children's too (an IDE
    client may post the directory's move alone: tests/file_event/test_directory_moves.py)."""
    process = monitor.start()
    monitor.wait_watching(process)
    (monitor.root / "a" / "dir" / "sub").mkdir(parents=True)
    (monitor.root / "b").mkdir()
    (monitor.root / "a" / "dir" / "one.txt").write_text("1")
    (monitor.root / "a" / "dir" / "sub" / "two.txt").write_text("22")
    created = await wait_file_events(nats.url, monitor.subject, lambda evs: len(evs) == 6)
    await asyncio.sleep(0.3)
    (monitor.root / "a" / "dir").rename(monitor.root / "b" / "dir")
    events = await wait_file_events(nats.url, monitor.subject, lambda evs: len(evs) >= len(created) + 4)
    await asyncio.sleep(0.5)
    events = (await file_events(nats.url, monitor.subject))[len(created) :]
    assert sorted((e["kind"], e.get("old_path"), e["path"], e.get("is_dir", False)) for e in events) == [
        ("moved", "a/dir", "b/dir", True),
        ("moved", "a/dir/one.txt", "b/dir/one.txt", False),
        ("moved", "a/dir/sub", "b/dir/sub", True),
        ("moved", "a/dir/sub/two.txt", "b/dir/sub/two.txt", False),
    ]
