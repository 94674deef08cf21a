"""Workspace monitors' bus keys: issued with the workspace, withdrawn with it, and the answer to
nats-server's authorization callout (``shared.buscallout``) for a key that connects.

Keys live in the store (``repository``: ``monitor_key``/``monitor_keys``), so every replica of the
service answers for every monitor, whichever replica issued its key, on a laptop or in a cluster.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from services.provisioning import repository as repo
from services.provisioning.settings import ProvisioningSettings
from shared.buscallout import CalloutResponder
from shared.buspolicy import Role, monitor_role
from shared.monitorcreds import MonitorCredentials, new_monitor_credentials
from shared.store import Store, Transaction


class MonitorKeys:
    """Issue, withdraw and look up workspace monitors' keys in the service's store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def issue(self, tenant_id: UUID, user_id: UUID, workspace_id: UUID) -> MonitorCredentials:
        """New credentials for the workspace's monitor; any earlier ones stop working."""
        credentials = new_monitor_credentials(tenant_id, user_id, workspace_id)
        key = repo.MonitorKey(identity=credentials.identity, subject=credentials.subject, workspace_id=workspace_id)

        def replace(tx: Transaction) -> None:
            repo.withdraw_monitor_keys(tx, workspace_id)
            repo.add_monitor_key(tx, credentials.public_key, key)

        await self.store.run(replace)
        return credentials

    async def withdraw(self, workspace_id: UUID) -> bool:
        """Withdraw the workspace monitor's keys; False when it had none."""
        return await self.store.run(lambda tx: repo.withdraw_monitor_keys(tx, workspace_id)) > 0

    async def role_of(self, public_key: str) -> Role | None:
        """What a connecting key may do: its workspace's monitor role, or nothing if unknown."""
        key = await self.store.run(lambda tx: repo.monitor_key(tx, public_key))
        return None if key is None else monitor_role(key.identity, key.subject)


def callout_responder(settings: ProvisioningSettings, keys: MonitorKeys) -> CalloutResponder | None:
    """The authorization callout's responder when this replica holds the monitor issuer's seed."""
    if settings.monitor_issuer_seed_file is None:
        return None
    seed = Path(settings.monitor_issuer_seed_file).read_bytes().strip()
    return CalloutResponder(seed, keys.role_of, ttl=settings.monitor_authorization_ttl_seconds)
