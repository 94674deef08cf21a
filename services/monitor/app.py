"""The monitor's composition: lock its workspace, watch, coalesce, describe, buffer on disk, publish."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from contracts.subjects import file_subject
from services.monitor import manifest
from services.monitor.buffer import DiskBuffer, Seen
from services.monitor.coalesce import Change, Coalescer
from services.monitor.describe import digest_of
from services.monitor.encode import InvalidChange, encode_change
from services.monitor.heap import TRIM_AFTER, release_free_memory
from services.monitor.ignore import IgnoreRules
from services.monitor.publisher import Publisher
from services.monitor.settings import MonitorSettings
from services.monitor.watcher import TreeWatcher

log = logging.getLogger(__name__)

EXIT_LOCKED = 75  # another monitor holds this workspace (services.provisioning.backends.monitors)
STOP_FLUSH_SECONDS = 2.0
# Changes described and buffered per transaction: what a burst (an archive unpacked) holds in memory at
# once is bounded by this, not by the burst's size, and publishing starts after the first slice.
RECORD_BATCH = 256


def die_with_parent(parent_pid: int | None) -> None:
    """Under the local supervisor: SIGTERM when it dies, even by SIGKILL (no orphaned monitors)."""
    if parent_pid is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # it died before the call above took effect
        sys.exit(0)


def lock_workspace(state_dir: Path) -> IO[str] | None:
    """An exclusive lock held for the process's life; None when another monitor holds it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / "monitor.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    (state_dir / "monitor.pid").write_text(str(os.getpid()))
    return handle


class Monitor:
    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self.root = settings.workspace_root.resolve()
        self.state_dir = settings.state_dir()
        self.subject = file_subject(settings.tenant_id, settings.user_id, settings.workspace())
        self.coalescer = Coalescer(settings.monitor_quiet_seconds, settings.monitor_hold_max_seconds)
        self.buffer = DiskBuffer(self.state_dir / "buffer.sqlite3", settings.monitor_buffer_max_events)
        self.publisher = Publisher(
            self.buffer,
            self.subject,
            url=settings.nats_url,
            connect_options=settings.connect_options(),
            max_in_flight=settings.monitor_max_in_flight,
            timeout=settings.monitor_publish_timeout_seconds,
        )
        self.skipped = 0
        self.since_trim = 0  # changes reported since the heap was last given back

    def to_rows(self, changes: list[Change]) -> tuple[list[tuple[str, bytes]], list[Seen]]:
        """FileChange JSON (``encode``) per change, described from the disk as it is now (off the event loop), and
        what the manifest records of each."""
        rows = []
        seen: list[Seen] = []
        for change in changes:
            size: int | None = None
            sha256: str | None = None
            entry = None
            if change.kind != "deleted":
                try:
                    info = os.stat(self.root / change.path, follow_symlinks=False)
                except OSError:
                    info = None
                if info is not None:
                    entry = manifest.Entry(change.path, True, 0, 0)
                    if not change.is_dir:
                        size, sha256 = digest_of(self.root / change.path, info, self.settings.monitor_hash_max_bytes)
                        entry = manifest.Entry(change.path, False, info.st_size, info.st_mtime_ns, sha256)
            try:
                row = encode_change(
                    path=change.path,
                    kind=change.kind,
                    old_path=change.old_path,
                    is_dir=change.is_dir,
                    size=size,
                    sha256=sha256,
                    actor=self.settings.monitor_actor,
                    occurred_at=change.occurred_at,
                )
            except InvalidChange as error:  # what the contract refuses (a name not UTF-8, a path too long)
                self.skipped += 1
                log.warning("a change of %r cannot be reported (%s)", change.path, error)
                continue
            rows.append(row)
            seen.append((change.kind, change.path, change.old_path, entry))
        return rows, seen

    async def record(self, changes: list[Change]) -> None:
        for start in range(0, len(changes), RECORD_BATCH):
            rows, seen = await asyncio.to_thread(self.to_rows, changes[start : start + RECORD_BATCH])
            rows, seen = self._without_repeats(rows, seen)
            self.buffer.append(rows, seen)
            self.publisher.wake.set()

    def _without_repeats(
        self, rows: list[tuple[str, bytes]], seen: list[Seen]
    ) -> tuple[list[tuple[str, bytes]], list[Seen]]:
        """Drop the changes whose state is exactly what was last reported (``manifest.already_reported``)."""
        described = [entry for kind, _, _, entry in seen if kind in ("created", "modified") and entry is not None]
        repeated = manifest.already_reported(self.buffer.db, described)
        if not repeated:
            return rows, seen
        kept = [
            (row, item)
            for row, item in zip(rows, seen, strict=True)
            if not (item[0] in ("created", "modified") and item[1] in repeated)
        ]
        return [row for row, _ in kept], [item for _, item in kept]

    async def catch_up(self, rules: IgnoreRules) -> int:
        """Report what changed while no monitor watched: the tree against the manifest (once, at start,
        after the watch began: a change seen both ways is coalesced into one)."""
        known = manifest.load(self.buffer.db)
        now = await asyncio.to_thread(manifest.walk, self.root, rules)
        missed = manifest.differences(known, now)
        clock, wall = time.monotonic(), datetime.now(UTC)
        for raw in missed:
            self.coalescer.add(raw, clock, wall)
        if missed:
            log.info("%d changes made while no monitor watched", len(missed))
        return len(missed)

    async def watch(self, watcher: TreeWatcher, stop: asyncio.Event) -> None:
        while not stop.is_set():
            wait = self.coalescer.next_due_in(time.monotonic())
            watcher.wake.clear()
            if not watcher.events:
                stopping = asyncio.ensure_future(stop.wait())
                waking = asyncio.ensure_future(watcher.wake.wait())
                await asyncio.wait(
                    {stopping, waking}, timeout=1.0 if wait is None else wait, return_when="FIRST_COMPLETED"
                )
                stopping.cancel()
                waking.cancel()
            now, wall = time.monotonic(), datetime.now(UTC)
            for raw in watcher.take():
                self.coalescer.add(raw, now, wall)
            if watcher.overflowed:
                # The kernel dropped events (a burst such as unpacking an archive): what was lost is
                # what the tree has and the manifest of reported changes does not.
                watcher.overflowed = False
                found = await self.catch_up(watcher.rules)
                log.warning("the kernel's inotify queue overflowed; %d changes found by re-reading the tree", found)
            due = self.coalescer.due(time.monotonic())
            await self.record(due)
            self.since_trim += len(due)
            if self.since_trim >= TRIM_AFTER and not self.coalescer and not watcher.events:
                self.since_trim = 0  # a burst is over: what it allocated and freed goes back to the system
                release_free_memory()
        for raw in watcher.take():
            self.coalescer.add(raw, time.monotonic(), datetime.now(UTC))
        await self.record(self.coalescer.drain())

    async def run(self, stop: asyncio.Event) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        rules = IgnoreRules(self.settings.monitor_ignore)
        watcher = TreeWatcher(self.root, rules, asyncio.get_running_loop())
        watcher.start()
        (self.state_dir / "monitor.ready").write_text(str(os.getpid()))  # watched from here on
        await self.catch_up(rules)
        log.info(
            "watching %s; publishing on %s (%d changes waiting on disk)", self.root, self.subject, self.buffer.count
        )
        publishing = asyncio.create_task(self.publisher.run(stop))
        try:
            await self.watch(watcher, stop)
        finally:
            watcher.stop()
            await self._last_flush(publishing)
            self.buffer.close()

    async def _last_flush(self, publishing: asyncio.Task[None]) -> None:
        """On the way out: a short try to send what is buffered (the rest waits on disk for the next start)."""
        publishing.cancel()
        # Bounded: a library task that swallows its cancellation must not keep the process alive.
        await asyncio.wait({publishing}, timeout=STOP_FLUSH_SECONDS)
        deadline = time.monotonic() + STOP_FLUSH_SECONDS
        with contextlib.suppress(Exception):
            while self.buffer.count and self.publisher.connected and time.monotonic() < deadline:
                if not await asyncio.wait_for(self.publisher.send_once(), STOP_FLUSH_SECONDS):
                    break
        await self.publisher.close()
