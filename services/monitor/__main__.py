"""Workspace file monitor process: ``python -m services.monitor`` (settings from ``CODITECT_*``)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

# nats-py imports aiohttp when it can, for its WebSocket transport only; the monitor connects over
# nats:// and aiohttp would be about 9 MB of its resident memory (its budget: 60 MB at 1,000 changes/s).
# A None entry makes that import fail as if aiohttp were not installed, which nats-py allows for.
# Here, in the entry point, and not in a module tests import: it would hide aiohttp from their process.
if "aiohttp" not in sys.modules:
    sys.modules["aiohttp"] = None  # type: ignore[assignment]

from services.monitor.app import EXIT_LOCKED, Monitor, die_with_parent, lock_workspace
from services.monitor.settings import MonitorSettings
from services.monitor.spare import is_spare, wait_for_workspace
from shared.logs import setup_logging


def main() -> None:
    environ: dict[str, str] | None = None  # os.environ, unless this process started as a spare
    if is_spare(os.environ):
        parent = os.environ.get("CODITECT_MONITOR_PARENT_PID")
        die_with_parent(int(parent) if parent else None)
        environ = wait_for_workspace()
        if environ is None:
            return
    settings = MonitorSettings.from_environment(environ)  # tenant and user come from the environment
    die_with_parent(settings.monitor_parent_pid)
    setup_logging("monitor", settings.log_level)
    lock = lock_workspace(settings.state_dir())
    if lock is None:
        print(f"another monitor holds {settings.state_dir()}; exiting", file=sys.stderr)
        sys.exit(EXIT_LOCKED)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Monitor(settings).run(stop)

    asyncio.run(run())
    lock.close()


if __name__ == "__main__":
    main()
