"""Where workspaces are made, behind one interface; ``make_backend`` picks one by the settings."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from pydantic import BaseModel

from contracts import provisioning as api
from services.provisioning.settings import ProvisioningSettings

if TYPE_CHECKING:
    from services.provisioning.monitor_keys import MonitorKeys


class WorkspaceRef(BaseModel):
    tenant_id: UUID
    user_id: UUID

    @property
    def workspace_id(self) -> UUID:
        return api.workspace_id(self.tenant_id, self.user_id)


class Backend(Protocol):
    @property
    def name(self) -> api.Backend: ...

    async def provision(self, ref: WorkspaceRef) -> dict[str, str]:
        """Make (or bring back in line) the workspace; idempotent. Returns what clients see as ``details``."""
        ...

    async def deprovision(self, ref: WorkspaceRef) -> None:
        """Remove everything the workspace had; idempotent."""
        ...

    async def attach(self, refs: list[WorkspaceRef]) -> None:
        """After a (re)start: take charge of these ready workspaces again (the local backend's monitors)."""
        ...

    async def run(self, stop: asyncio.Event) -> None:
        """The backend's own background work until ``stop`` (supervising monitors)."""
        ...

    def close(self) -> None: ...


def make_backend(settings: ProvisioningSettings, keys: MonitorKeys | None = None) -> Backend:
    """``keys``: each workspace's monitor gets a bus key of its own (None: an open developer bus)."""
    if settings.provisioning_backend == "kubernetes":
        from services.provisioning.backends.kubernetes import KubernetesBackend

        return KubernetesBackend(settings, keys=keys)
    from services.provisioning.backends.local import LocalBackend

    return LocalBackend(settings, keys=keys)
