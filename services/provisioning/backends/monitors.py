"""Supervised file-monitor processes of the local backend: one ``python -m services.monitor`` per ready
workspace, restarted with backoff when it dies, stopped on deprovision.

No orphans, no doubles: each monitor asks the kernel to SIGTERM it when this process dies
(PR_SET_PDEATHSIG, set by the monitor itself with a parent-pid check against the race), and holds an
exclusive lock on its state folder while it runs, so a second monitor for the same workspace (another
replica, a survivor of an earlier run) exits at once with ``EXIT_LOCKED`` and is tried again later.
The monitor writes its pid beside the lock: deprovisioning stops whichever process holds it.

A warm spare (``monitor_spare``): one monitor process is kept started, its imports done, waiting on its
stdin (services/monitor/spare.py); a workspace's monitor is that spare, handed the workspace's variables
through the pipe, and another spare is started at once (and on any check that finds none alive).
Starting Python with the monitor's imports was most of the time from a registration to its workspace
being ready (bench/ready_path.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
SPARE_VARIABLE = "CODITECT_MONITOR_AWAIT_WORKSPACE"  # services.monitor.spare: wait on stdin for a workspace
# What a monitor must not take from this service's environment: the service's own bus identity and the
# monitor issuer's key (a monitor's identity comes from ``monitor_env`` only), and the spare marker
# (only the spares this supervisor starts wait for a workspace).
NOT_INHERITED = frozenset(
    {
        "CODITECT_NATS_SEED_FILE",
        "CODITECT_NATS_USER",
        "CODITECT_NATS_PASSWORD",
        "CODITECT_MONITOR_ISSUER_SEED_FILE",
        SPARE_VARIABLE,
    }
)


def _spawn(env: dict[str, str], output: IO[bytes], *, spare: bool) -> subprocess.Popen[bytes]:
    """``python -m services.monitor``; a spare reads its workspace from the pipe on its stdin."""
    # Started from the event loop's thread: PR_SET_PDEATHSIG follows the thread that forked the child.
    inherited = {name: value for name, value in os.environ.items() if name not in NOT_INHERITED}
    return subprocess.Popen(
        [sys.executable, "-m", "services.monitor"],
        env={**inherited, **env, "CODITECT_MONITOR_PARENT_PID": str(os.getpid()), "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.PIPE if spare else subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _hand_over(spare: subprocess.Popen[bytes], env: dict[str, str], log_path: Path) -> bool:
    """Give a waiting spare its workspace; False when it is gone (then a monitor is started afresh)."""
    if spare.stdin is None or spare.poll() is not None:
        return False
    try:
        spare.stdin.write(json.dumps({"env": env, "log": str(log_path)}).encode() + b"\n")
        spare.stdin.close()
    except OSError:  # it died meanwhile (a broken pipe)
        return False
    return True


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

    def start(self, spare: subprocess.Popen[bytes] | None = None) -> None:
        """Run the workspace's monitor: the waiting ``spare`` if one is given and alive, else a new process."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ready_file(self.state_dir).unlink(missing_ok=True)
        if spare is not None and _hand_over(spare, self.env, self.state_dir / "monitor.log"):
            self.process = spare  # it writes to the workspace's log itself from now on
        else:
            if self.log_file is None:
                self.log_file = (self.state_dir / "monitor.log").open("ab")
            self.process = _spawn(self.env, self.log_file, spare=False)
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
    def __init__(self, backoff_max: float, *, spare_log: Path | None = None) -> None:
        """``spare_log``: where a waiting spare writes (None: no spare, every monitor starts afresh)."""
        self.backoff_max = backoff_max
        self.children: dict[UUID, MonitorChild] = {}
        self.spare_log = spare_log
        self.spare: subprocess.Popen[bytes] | None = None
        self._spare_output: IO[bytes] | None = None

    def take_spare(self) -> subprocess.Popen[bytes] | None:
        """The waiting spare, if one runs (the next ``keep_spare`` starts another)."""
        spare, self.spare = self.spare, None
        return spare if spare is not None and spare.poll() is None else None

    def keep_spare(self) -> None:
        """Start a spare if none waits (at start, after one was handed over, or died)."""
        if self.spare_log is None or (self.spare is not None and self.spare.poll() is None):
            return
        if self.spare is not None:
            log.warning("the spare monitor exited with code %s; starting another", self.spare.returncode)
        if self._spare_output is None:
            self.spare_log.parent.mkdir(parents=True, exist_ok=True)
            self._spare_output = self.spare_log.open("ab")
        self.spare = _spawn({SPARE_VARIABLE: "1"}, self._spare_output, spare=True)

    def ensure(self, workspace_id: UUID, state_dir: Path, env: dict[str, str]) -> MonitorChild:
        """A running (or about to be restarted) monitor for the workspace."""
        child = self.children.get(workspace_id)
        if child is None:
            child = MonitorChild(workspace_id, state_dir, env)
            self.children[workspace_id] = child
            child.start(self.take_spare())
            self.keep_spare()  # at once: workspaces requested back to back find it further along
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
                child.start(self.take_spare())
                self.keep_spare()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.check(time.monotonic())
            self.keep_spare()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECK_INTERVAL_SECONDS)

    async def stop(self, workspace_id: UUID, state_dir: Path) -> None:
        """Stop the workspace's monitor: ours, and whichever process its pid file names (a survivor)."""
        child = self.children.pop(workspace_id, None)
        if child is not None and child.process is not None:
            await _terminate(child.process)
            child.close_log()
        holder = _pid_of(state_dir)
        if holder is not None and _is_monitor_of(holder, state_dir):
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
        spare = self.take_spare()
        if spare is not None:
            spare.terminate()
            try:
                spare.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                spare.kill()
                spare.wait()
        if self._spare_output is not None:
            self._spare_output.close()
            self._spare_output = None
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


def _is_monitor_of(pid: int, state_dir: Path) -> bool:
    """A pid file can outlive its process and the pid be reused: the process must be a monitor holding
    this workspace's lock file open (a handed-over spare's initial environment names no workspace)."""
    lock = os.path.realpath(state_dir / "monitor.lock")
    try:
        if b"services.monitor" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for descriptor in descriptors:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{descriptor}") == lock:
                return True
    return False
