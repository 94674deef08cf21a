"""Supervised file-monitor processes of the local backend: one ``python -m services.monitor`` per ready
workspace, restarted with backoff when it dies, stopped on deprovision.

No orphans, no doubles: each monitor asks the kernel to SIGTERM it when this process dies
(PR_SET_PDEATHSIG, set by the monitor itself with a parent-pid check against the race), and holds an
exclusive lock on its state folder while it runs, so a second monitor for the same workspace (another
replica, a survivor of an earlier run) exits at once with ``EXIT_LOCKED`` and is tried again later.
The monitor writes its pid beside the lock: deprovisioning stops whichever process holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from uuid import UUID

log = logging.getLogger(__name__)

EXIT_LOCKED = 75  # services.monitor: another monitor holds this workspace
LOCKED_RETRY_SECONDS = 2.0
HEALTHY_AFTER_SECONDS = 30.0
CHECK_INTERVAL_SECONDS = 0.2
STOP_TIMEOUT_SECONDS = 5.0


def pid_file(state_dir: Path) -> Path:
    return state_dir / "monitor.pid"


def ready_file(state_dir: Path) -> Path:
    return state_dir / "monitor.ready"


@dataclass
class MonitorChild:
    workspace_id: UUID
    state_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    backoff: float = 0.5
    restarts: int = 0
    log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ready_file(self.state_dir).unlink(missing_ok=True)
        if self.log_file is None:
            self.log_file = (self.state_dir / "monitor.log").open("ab")
        env = {**os.environ, **self.env, "CODITECT_MONITOR_PARENT_PID": str(os.getpid()), "PYTHONUNBUFFERED": "1"}
        # Started from the event loop's thread: PR_SET_PDEATHSIG follows the thread that forked the child.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.monitor"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        self.restart_at = None

    def watching(self) -> bool:
        """This child said it watches its tree (its pid in the ready file)."""
        if self.process is None or self.process.poll() is not None:
            return False
        try:
            return ready_file(self.state_dir).read_text().strip() == str(self.process.pid)
        except OSError:
            return False

    def close_log(self) -> None:
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


class MonitorSupervisor:
    def __init__(self, backoff_max: float) -> None:
        self.backoff_max = backoff_max
        self.children: dict[UUID, MonitorChild] = {}

    def ensure(self, workspace_id: UUID, state_dir: Path, env: dict[str, str]) -> MonitorChild:
        """A running (or about to be restarted) monitor for the workspace."""
        child = self.children.get(workspace_id)
        if child is None:
            child = MonitorChild(workspace_id, state_dir, env)
            self.children[workspace_id] = child
            child.start()
        return child

    async def wait_watching(self, workspace_id: UUID, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            child = self.children.get(workspace_id)
            if child is None:
                return False
            if child.watching():
                return True
            self.check(time.monotonic())
            await asyncio.sleep(0.02)
        return False

    def check(self, now: float) -> None:
        for child in self.children.values():
            if child.process is None:
                continue
            code = child.process.poll()
            if child.restart_at is None and code is not None:
                if code == EXIT_LOCKED:
                    child.restart_at = now + LOCKED_RETRY_SECONDS
                    continue
                if now - child.started_at > HEALTHY_AFTER_SECONDS:
                    child.backoff = 0.5
                log.warning(
                    "monitor of workspace %s exited with code %s; restarting in %.1fs",
                    child.workspace_id,
                    code,
                    child.backoff,
                )
                child.restart_at = now + child.backoff
                child.backoff = min(child.backoff * 2, self.backoff_max)
            elif child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                child.start()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.check(time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECK_INTERVAL_SECONDS)

    async def stop(self, workspace_id: UUID, state_dir: Path) -> None:
        """Stop the workspace's monitor: ours, and whichever process its pid file names (a survivor)."""
        child = self.children.pop(workspace_id, None)
        if child is not None and child.process is not None:
            await _terminate(child.process)
            child.close_log()
        holder = _pid_of(state_dir)
        if holder is not None and _is_monitor_of(holder, workspace_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
            while _alive(holder) and time.monotonic() < deadline:  # noqa: ASYNC110  (another process: no event)
                await asyncio.sleep(0.05)
            if _alive(holder):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(holder, signal.SIGKILL)

    def close(self) -> None:
        """SIGTERM every monitor and wait a little: they flush their disk buffer and exit."""
        for child in self.children.values():
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for child in self.children.values():
            if child.process is not None:
                try:
                    child.process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
            child.close_log()
        self.children.clear()


async def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110  (a child process: no event)
        await asyncio.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.wait()


def _pid_of(state_dir: Path) -> int | None:
    try:
        return int(pid_file(state_dir).read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _is_monitor_of(pid: int, workspace_id: UUID) -> bool:
    """A pid file can outlive its process and the pid be reused: check what the process is."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"services.monitor" in cmdline and f"CODITECT_WORKSPACE_ID={workspace_id}".encode() in environ
