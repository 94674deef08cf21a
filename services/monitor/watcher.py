"""The watchdog side: inotify (on Linux) events of the workspace tree, made workspace-relative and
filtered, handed to the event loop. watchdog rather than watchfiles: watchdog reports a rename as one
move with its source and destination (inotify's paired IN_MOVED_FROM/IN_MOVED_TO), watchfiles only as
a delete and an add, which would lose the move; it is the long-standing, maintained choice."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Final

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from services.monitor.coalesce import RawEvent
from services.monitor.ignore import IgnoreRules

# What the monitor reports, and so all it asks the kernel for (watchdog builds the inotify mask from it).
# Not opened/closed files, nor a folder's "modified": a written file made six events (the writer's open,
# modify, close; the folder; the monitor's own open and close when hashing it), each a Python object queued
# between watchdog's threads: under 1,000 changes/s they were most of the monitor's memory, and in a burst
# they filled the kernel's queue (16,384 events) three times as fast.
REPORTED: Final[list[type[FileSystemEvent]]] = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
    FileMovedEvent,
    DirMovedEvent,
]


class _OverflowAlarm(logging.Handler):
    """watchdog tells of a kernel inotify queue overflow (events lost) only in a log record; this turns
    that record into a call, so the monitor can re-read the tree and report what was lost."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("Inotify queue overflowed"):
            self.on_overflow()


class TreeWatcher(FileSystemEventHandler):
    """Collects raw events from watchdog's thread into a deque and wakes the loop once per batch."""

    def __init__(self, root: Path, rules: IgnoreRules, loop: asyncio.AbstractEventLoop) -> None:
        self.root = str(root.resolve())
        self.rules = rules
        self.loop = loop
        self.events: deque[RawEvent] = deque()
        self.wake = asyncio.Event()
        self._signalled = False
        self.overflowed = False  # set from watchdog's thread; the loop re-reads the tree and clears it
        self.observer = Observer()
        self._alarm = _OverflowAlarm(self._on_overflow)

    def start(self) -> None:
        logging.getLogger("watchdog.observers.inotify_c").addHandler(self._alarm)
        self.observer.schedule(self, self.root, recursive=True, event_filter=REPORTED)
        self.observer.start()

    def _on_overflow(self) -> None:
        self.overflowed = True
        self.loop.call_soon_threadsafe(self._wake)

    def stop(self) -> None:
        # watchdog logs an error for an event its reader thread picks up while the observer stops.
        logging.getLogger("watchdog.observers.inotify").setLevel(logging.CRITICAL)
        self.observer.stop()
        self.observer.join(5)
        logging.getLogger("watchdog.observers.inotify_c").removeHandler(self._alarm)

    def _relative(self, path: str | bytes) -> str | None:
        text = os.fsdecode(path)
        relative = os.path.relpath(text, self.root).replace(os.sep, "/")
        if relative in (".", "") or relative.startswith("../"):
            return None
        return None if self.rules.ignored(relative) else relative

    def on_any_event(self, event: FileSystemEvent) -> None:
        raw = self._translate(event)
        if raw is None:
            return
        self.events.append(raw)
        if not self._signalled:
            self._signalled = True
            self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._signalled = False
        self.wake.set()

    def _translate(self, event: FileSystemEvent) -> RawEvent | None:
        is_dir = event.is_directory
        if isinstance(event, FileMovedEvent | DirMovedEvent):
            src, dest = self._relative(event.src_path), self._relative(event.dest_path)
            if src is None and dest is None:
                return None
            if src is None:
                return RawEvent("created", dest or "", is_dir)  # moved in from an ignored place
            if dest is None:
                return RawEvent("deleted", src, is_dir)  # moved away into an ignored place
            return RawEvent("moved", dest, is_dir, src=src)
        path = self._relative(event.src_path)
        if path is None:
            return None
        if isinstance(event, FileCreatedEvent | DirCreatedEvent):
            return RawEvent("created", path, is_dir)
        if isinstance(event, FileDeletedEvent | DirDeletedEvent):
            return RawEvent("deleted", path, is_dir)
        if isinstance(event, FileModifiedEvent) and not is_dir:
            return RawEvent("modified", path)
        return None  # directory "modified", opened, closed: no change of their own

    def take(self) -> list[RawEvent]:
        taken = []
        while self.events:
            taken.append(self.events.popleft())
        return taken
