"""A change the monitor already reported is not reported again when it is seen a second time (the
kernel's event arriving after a re-read of the tree reported the file, or a burst split around the
quiet time under load: 22,073 events for 20,000 files in a loaded run), while a real change, even one
that keeps the size and the modification time, still is."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.monitor.app import Monitor
from services.monitor.coalesce import Change
from services.monitor.settings import MonitorSettings


@pytest.fixture
def monitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Monitor:
    monkeypatch.setenv("CODITECT_TENANT_ID", str(uuid.uuid4()))
    monkeypatch.setenv("CODITECT_USER_ID", str(uuid.uuid4()))
    monkeypatch.setenv("CODITECT_WORKSPACE_ROOT", str(tmp_path / "tree"))
    monkeypatch.setenv("CODITECT_MONITOR_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "tree").mkdir()
    return Monitor(MonitorSettings.from_environment())


def change(kind: str, path: str, *, is_dir: bool = False) -> Change:
    return Change(path=path, kind=kind, is_dir=is_dir, occurred_at=datetime.now(UTC))  # type: ignore[arg-type]


async def test_a_change_seen_twice_is_reported_once(monitor: Monitor) -> None:
    (monitor.root / "a.txt").write_bytes(b"one")
    (monitor.root / "src").mkdir()
    await monitor.record([change("created", "a.txt"), change("created", "src", is_dir=True)])
    assert monitor.buffer.count == 2
    # The same file and folder seen again, unchanged: nothing new to say.
    await monitor.record(
        [change("modified", "a.txt"), change("created", "a.txt"), change("created", "src", is_dir=True)]
    )
    assert monitor.buffer.count == 2
    monitor.buffer.close()


async def test_a_real_change_is_reported_even_with_the_same_size_and_time(monitor: Monitor) -> None:
    import os

    target = monitor.root / "a.txt"
    target.write_bytes(b"one")
    stamp = target.stat().st_mtime_ns
    await monitor.record([change("created", "a.txt")])
    target.write_bytes(b"two")  # same size; the time set back as a coarse clock would leave it
    os.utime(target, ns=(stamp, stamp))
    await monitor.record([change("modified", "a.txt")])
    assert monitor.buffer.count == 2
    # Deleted and created again with the same content: both are reported.
    target.unlink()
    await monitor.record([change("deleted", "a.txt")])
    target.write_bytes(b"two")
    await monitor.record([change("created", "a.txt")])
    assert monitor.buffer.count == 4
    monitor.buffer.close()
