"""Workspace monitor credentials: one NATS identity per workspace, which may publish its own
workspace's file changes (``fevt.<tenant>.<user>.<workspace>``, ``contracts.subjects.file_subject``)
and receive on its own inbox (JetStream publish acknowledgements) — nothing else.

The provisioning service calls ``issue_monitor_credentials`` when it creates a workspace and
``revoke_monitor_credentials`` when it removes one. The tenant and workspace a monitor speaks for
are its subject's, enforced by the server, never read from a message body.

Mechanism here (``./dev up``, tests): the server's ``authorization.conf`` is rewritten with the
monitor's public nkey and permissions, then the local nats-server reloads it (SIGHUP; a revoked
monitor's connection is closed by the reload). The seed is returned once and stored nowhere: the
caller hands it to the monitor (in Kubernetes, as the workspace pod's Secret). See README, "Bus
security", for compose and Kubernetes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from contracts.subjects import file_subject
from shared.busauth import BusFolder, locked, new_user_seed, public_key_of
from shared.buspolicy import inbox_prefix
from shared.settings import CommonSettings


class MonitorCredentialsUnavailable(RuntimeError):
    """This process cannot issue monitor credentials (no bus folder configured)."""


@dataclass(frozen=True)
class MonitorCredentials:
    """What a workspace monitor needs to join the bus; ``seed`` is a secret."""

    identity: str
    subject: str
    seed: str
    public_key: str

    @property
    def inbox_prefix(self) -> str:
        return inbox_prefix(self.identity)

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``."""
        return {"nkeys_seed_str": self.seed, "inbox_prefix": self.inbox_prefix, "name": self.identity}

    def __repr__(self) -> str:  # never the seed in a log line
        return f"MonitorCredentials(identity={self.identity!r}, subject={self.subject!r})"


def monitor_identity(workspace_id: UUID | str) -> str:
    return f"monitor-{workspace_id}"


class LocalMonitorIssuer:
    """Monitor identities in a bus folder's nats-server configuration (one server on this host)."""

    def __init__(self, folder: Path) -> None:
        self.bus = BusFolder(folder)

    def issue(self, tenant_id: UUID | str, user_id: UUID | str, workspace_id: UUID | str) -> MonitorCredentials:
        """New credentials for the workspace's monitor; any earlier ones stop working."""
        seed = new_user_seed()
        credentials = MonitorCredentials(
            identity=monitor_identity(workspace_id),
            subject=file_subject(tenant_id, user_id, workspace_id),
            seed=seed.decode(),
            public_key=public_key_of(seed),
        )
        with locked(self.bus.path):
            monitors = self.bus.monitors()
            monitors[credentials.identity] = {"public_key": credentials.public_key, "subject": credentials.subject}
            self._apply(monitors)
        return credentials

    def revoke(self, tenant_id: UUID | str, user_id: UUID | str, workspace_id: UUID | str) -> bool:
        """Withdraw the workspace monitor's credentials; False when it had none."""
        with locked(self.bus.path):
            monitors = self.bus.monitors()
            if monitors.pop(monitor_identity(workspace_id), None) is None:
                return False
            self._apply(monitors)
        return True

    def _apply(self, monitors: dict[str, dict[str, str]]) -> None:
        self.bus.save_monitors(monitors)
        self.bus.write_authorization()
        self.bus.reload_server()


def monitor_issuer(settings: CommonSettings) -> LocalMonitorIssuer:
    if settings.bus_dir is None:
        raise MonitorCredentialsUnavailable(
            "CODITECT_BUS_DIR is not set: this process cannot issue monitor credentials"
        )
    return LocalMonitorIssuer(settings.bus_dir)


async def issue_monitor_credentials(
    settings: CommonSettings, tenant_id: UUID | str, user_id: UUID | str, workspace_id: UUID | str
) -> MonitorCredentials:
    """Issue a workspace monitor's credentials (file work in a thread: the caller's loop keeps going)."""
    return await asyncio.to_thread(monitor_issuer(settings).issue, tenant_id, user_id, workspace_id)


async def revoke_monitor_credentials(
    settings: CommonSettings, tenant_id: UUID | str, user_id: UUID | str, workspace_id: UUID | str
) -> bool:
    return await asyncio.to_thread(monitor_issuer(settings).revoke, tenant_id, user_id, workspace_id)
