"""The local backend: a workspace is a directory ``<workspaces>/<tenant>/<user>`` watched by a supervised
monitor process; deprovisioning stops the monitor and removes the directory."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Final
from uuid import UUID

from contracts import provisioning as api
from services.provisioning.backends import WorkspaceRef
from services.provisioning.backends.monitors import MonitorSupervisor
from services.provisioning.monitor_env import MonitorIdentity, monitor_environment
from services.provisioning.settings import ProvisioningSettings
from shared.buspolicy import inbox_prefix
from shared.monitorcreds import monitor_identity

if TYPE_CHECKING:
    from services.provisioning.monitor_keys import MonitorKeys

MONITOR_START_TIMEOUT_SECONDS = 15.0
SEED_FILE = "nats.nk"


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


class MonitorDidNotStart(RuntimeError):
    pass


class LocalBackend:
    name: Final[api.Backend] = "local"

    def __init__(self, settings: ProvisioningSettings, *, keys: MonitorKeys | None = None) -> None:
        self.settings = settings
        self.keys = keys
        self.root = settings.workspaces_root().resolve()
        self.monitors_root = settings.monitors_root().resolve()
        self.monitors = MonitorSupervisor(
            settings.monitor_restart_backoff_max_seconds,
            spare_log=self.monitors_root / "spare.log" if settings.monitor_spare else None,
        )

    def path(self, ref: WorkspaceRef) -> Path:
        return self.root / str(ref.tenant_id) / str(ref.user_id)

    def state_dir(self, ref: WorkspaceRef) -> Path:
        return self.state_dir_of(ref.workspace_id)

    def state_dir_of(self, workspace_id: UUID) -> Path:
        return self.monitors_root / str(workspace_id)

    async def _identity(self, ref: WorkspaceRef) -> MonitorIdentity | None:
        """The workspace monitor's own bus identity, issued once and kept in its state folder (0600).
        None on an open developer bus (no keys issued here): the monitor then connects as services do."""
        if self.keys is None:
            return None
        identity = monitor_identity(ref.workspace_id)
        seed_file = self.state_dir(ref) / SEED_FILE
        if not seed_file.exists():
            credentials = await self.keys.issue(ref.tenant_id, ref.user_id, ref.workspace_id)
            await asyncio.to_thread(_write_secret, seed_file, credentials.seed)
        return MonitorIdentity(identity=identity, inbox_prefix=inbox_prefix(identity), seed_file=seed_file)

    async def _ensure_monitor(self, ref: WorkspaceRef) -> None:
        if self.monitors.children.get(ref.workspace_id) is not None:
            return
        credentials = await self._identity(ref)
        env = monitor_environment(
            self.settings,
            tenant_id=ref.tenant_id,
            user_id=ref.user_id,
            workspace_id=ref.workspace_id,
            root=self.path(ref),
            state_dir=self.state_dir(ref),
            credentials=credentials,
        )
        self.monitors.ensure(ref.workspace_id, self.state_dir(ref), env)

    async def provision(self, ref: WorkspaceRef) -> dict[str, str]:
        path = self.path(ref)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        await self._ensure_monitor(ref)
        # Ready means watched: a change made right after `ready` is seen.
        if not await self.monitors.wait_watching(ref.workspace_id, MONITOR_START_TIMEOUT_SECONDS):
            raise MonitorDidNotStart(
                f"the file monitor did not start within {MONITOR_START_TIMEOUT_SECONDS:g}s "
                f"(log: {self.state_dir(ref) / 'monitor.log'})"
            )
        return {"path": str(path)}

    async def deprovision(self, ref: WorkspaceRef) -> None:
        await self.monitors.stop(ref.workspace_id, self.state_dir(ref))
        if self.keys is not None:
            await self.keys.withdraw(ref.workspace_id)
        await asyncio.to_thread(shutil.rmtree, self.path(ref), True)
        await asyncio.to_thread(shutil.rmtree, self.state_dir(ref), True)

    async def attach(self, refs: list[WorkspaceRef]) -> None:
        for ref in refs:
            if self.path(ref).is_dir():
                await self._ensure_monitor(ref)

    async def run(self, stop: asyncio.Event) -> None:
        await self.monitors.run(stop)

    def close(self) -> None:
        self.monitors.close()
