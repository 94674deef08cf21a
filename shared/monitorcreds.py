"""Workspace monitor credentials: one NATS identity per workspace, which may publish its own
workspace's file changes (``fevt.<tenant>.<user>.<workspace>``, ``contracts.subjects.file_subject``)
and receive on its own inbox (JetStream publish acknowledgements) — nothing else.

The provisioning service issues them when it creates a workspace and withdraws them when it removes
one (``services.provisioning.monitor_keys``): it records the public key in its store and admits the
monitor through nats-server's authorization callout (``shared.buscallout``), the same way on a laptop,
in compose and on Kubernetes; the server's configuration never changes. The tenant and workspace a
monitor speaks for are its subject's, enforced by the server, never read from a message body. The seed
is returned once and stored nowhere by the issuer: the caller hands it to the monitor (a 0600 file
beside it locally, the workspace's Secret on Kubernetes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from contracts.subjects import file_subject
from shared.busauth import new_user_seed, public_key_of
from shared.buspolicy import inbox_prefix


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


def new_monitor_credentials(tenant_id: UUID | str, user_id: UUID | str, workspace_id: UUID | str) -> MonitorCredentials:
    """Fresh credentials for a workspace's monitor (the issuer records the public key: ``authorize``)."""
    seed = new_user_seed()
    return MonitorCredentials(
        identity=monitor_identity(workspace_id),
        subject=file_subject(tenant_id, user_id, workspace_id),
        seed=seed.decode(),
        public_key=public_key_of(seed),
    )
