"""Monitor settings from the environment (``CODITECT_*``; on Kubernetes also the pod's ``TENANT_ID``/``USER_ID``).

Read as pydantic-settings would (``CODITECT_`` + the field's name in any case, list fields as JSON), but
by a plain model: pydantic-settings and its sources (cloud vaults, dotenv, CLI) are about 2 MB of the
monitor's resident memory, which runs once per workspace with a budget of 60 MB."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from contracts import provisioning

PREFIX: Final = "CODITECT_"
# Fields read from other variables too (a workspace pod's own), in the order they are tried.
ALIASES: Final = {
    "tenant_id": ("CODITECT_TENANT_ID", "TENANT_ID"),
    "user_id": ("CODITECT_USER_ID", "USER_ID"),
    "workspace_id": ("CODITECT_WORKSPACE_ID", "WORKSPACE_ID"),
}
JSON_FIELDS: Final = frozenset({"monitor_ignore"})


class MonitorSettings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> MonitorSettings:
        """The settings the environment gives (``os.environ`` by default); names match in any case."""
        found = {name.upper(): value for name, value in (os.environ if environ is None else environ).items()}
        values: dict[str, Any] = {}
        for field in cls.model_fields:
            for name in ALIASES.get(field, (PREFIX + field.upper(),)):
                if name in found:
                    values[field] = json.loads(found[name]) if field in JSON_FIELDS else found[name]
                    break
        return cls.model_validate(values)

    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = Field(default=None, description="NATS identity of this workspace's monitor.")
    nats_password: SecretStr | None = None
    nats_seed_file: Path | None = Field(
        default=None, description="The nkey seed file of this workspace's own bus identity (issued by provisioning)."
    )
    nats_identity: str | None = Field(default=None, description="That identity's name (in the server's logs).")
    nats_inbox_prefix: str | None = Field(
        default=None, description="Where replies and publish acks reach that identity (the only inbox it may read)."
    )
    tenant_id: UUID
    user_id: UUID
    workspace_id: UUID | None = Field(
        default=None,
        description="Default: derived from tenant and user (contracts.provisioning.workspace_id).",
    )

    def connect_options(self) -> dict[str, Any]:
        """``nats.connect`` arguments: the workspace's nkey identity, else a user and password, else anonymous."""
        options: dict[str, Any] = {"name": self.nats_identity or "coditect-monitor"}
        if self.nats_seed_file is not None:
            options["nkeys_seed"] = str(self.nats_seed_file)
        elif self.nats_user is not None:
            options["user"] = self.nats_user
            options["password"] = self.nats_password.get_secret_value() if self.nats_password else None
        if self.nats_inbox_prefix is not None:
            options["inbox_prefix"] = self.nats_inbox_prefix
        return options

    workspace_root: Path = Field(default=Path("/workspace"), description="The tree watched, recursively.")
    monitor_state_dir: Path | None = Field(
        default=None, description="Lock, pid, disk buffer; default <root>/../.coditect-monitor-<workspace>."
    )
    monitor_actor: str = Field(default="user", description="Who makes the changes: user, or an AI agent's name.")
    monitor_ignore: list[str] = Field(
        default_factory=list, description="Extra fnmatch patterns (JSON list) matched against paths and names."
    )
    monitor_quiet_seconds: float = Field(
        default=0.05, gt=0, description="A path's changes are one event once it has been quiet this long."
    )
    monitor_hold_max_seconds: float = Field(
        default=1.0, gt=0, description="A path written without pause still yields an event this often."
    )
    monitor_hash_max_bytes: int = Field(default=16 * 1024 * 1024, ge=0, description="Files larger get no sha256.")
    monitor_max_in_flight: int = Field(default=256, ge=1, description="Unacknowledged publishes at once.")
    monitor_publish_timeout_seconds: float = Field(default=5.0, gt=0)
    monitor_buffer_max_events: int = Field(
        default=200_000, ge=1, description="Changes kept on disk while the bus is away; past it the oldest go."
    )
    monitor_parent_pid: int | None = Field(
        default=None, description="Set by the local supervisor: the monitor ends when that process does."
    )
    log_level: str = "INFO"

    def workspace(self) -> UUID:
        return self.workspace_id or provisioning.workspace_id(self.tenant_id, self.user_id)

    def state_dir(self) -> Path:
        if self.monitor_state_dir is not None:
            return self.monitor_state_dir
        root = self.workspace_root.resolve()
        return root.parent / f".coditect-monitor-{self.workspace()}"
