"""The watcher asks the kernel only for the events the monitor reports. Opening, reading and closing
files (the monitor's own hashing reads every changed file) and a folder's "modified" made five of every
six events watchdog built for a written file; each one a Python object queued between watchdog's
threads, they were most of the monitor's memory under load (bench row M2) and filled the kernel's
inotify queue in bursts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from watchdog.events import FileSystemEvent

from services.monitor.ignore import IgnoreRules
from services.monitor.watcher import TreeWatcher


class _Counting(TreeWatcher):
    def __init__(self, root: Path, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(root, IgnoreRules([]), loop)
        self.built: list[str] = []

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.built.append(f"{'dir' if event.is_directory else 'file'} {event.event_type}")
        super().on_any_event(event)


async def test_opening_reading_and_closing_files_make_no_events(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    watcher = _Counting(tmp_path, asyncio.get_running_loop())
    watcher.start()
    try:
        target = tmp_path / "src" / "a.txt"
        target.write_bytes(b"one")
        for _ in range(5):
            target.read_bytes()  # what the monitor does to hash it
        (tmp_path / "src" / "b.txt").write_bytes(b"two")
        (tmp_path / "src" / "b.txt").rename(tmp_path / "src" / "c.txt")
        (tmp_path / "src" / "c.txt").unlink()
        deadline = asyncio.get_running_loop().time() + 5
        while "file deleted" not in watcher.built:
            assert asyncio.get_running_loop().time() < deadline, watcher.built
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # anything still on its way
    finally:
        watcher.stop()
    assert set(watcher.built) == {"file created", "file modified", "file moved", "file deleted"}, watcher.built
    assert [(e.kind, e.path) for e in watcher.take()][:1] == [("created", "src/a.txt")]
