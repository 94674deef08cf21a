"""Monitor settings from the environment (``CODITECT_*``; on Kubernetes also the pod's ``TENANT_ID``/``USER_ID``).

Read as pydantic-settings would (``CODITECT_`` + the field's name in any case, list fields as JSON), but
by a plain dataclass: the monitor runs once per workspace with a budget of 60 MB resident, and pydantic
with its models is about 12 MB of that and 0.7 s of its start-up (the monitor imports no pydantic at all:
tests/provisioning/test_monitor_encoding.py)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from uuid import UUID

from contracts.ids import workspace_id

PREFIX: Final = "CODITECT_"
# Fields read from other variables too (a workspace pod's own), in the order they are tried.
ALIASES: Final = {
    "tenant_id": ("CODITECT_TENANT_ID", "TENANT_ID"),
    "user_id": ("CODITECT_USER_ID", "USER_ID"),
    "workspace_id": ("CODITECT_WORKSPACE_ID", "WORKSPACE_ID"),
}


class SettingsError(ValueError):
    """The environment does not make valid monitor settings (the message names every bad variable)."""


class Secret:
    """A value kept out of reprs and logs (pydantic's SecretStr, in the few lines the monitor needs)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _string_list(text: str) -> list[str]:
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("expected a JSON list of strings")
    return value


# How each field is read from its variable's text (str when not named here), and its lower bound.
_READ: Final[dict[str, Callable[[str], Any]]] = {
    "nats_password": Secret,
    "nats_seed_file": Path,
    "tenant_id": UUID,
    "user_id": UUID,
    "workspace_id": UUID,
    "workspace_root": Path,
    "monitor_state_dir": Path,
    "monitor_ignore": _string_list,
    "monitor_quiet_seconds": float,
    "monitor_hold_max_seconds": float,
    "monitor_hash_max_bytes": int,
    "monitor_max_in_flight": int,
    "monitor_publish_timeout_seconds": float,
    "monitor_buffer_max_events": int,
    "monitor_parent_pid": int,
}
_ABOVE_ZERO: Final = frozenset({"monitor_quiet_seconds", "monitor_hold_max_seconds", "monitor_publish_timeout_seconds"})
_AT_LEAST: Final = {"monitor_hash_max_bytes": 0, "monitor_max_in_flight": 1, "monitor_buffer_max_events": 1}


@dataclass(frozen=True, kw_only=True)
class MonitorSettings:
    tenant_id: UUID
    user_id: UUID
    # The workspace's id; default: derived from tenant and user (contracts.ids.workspace_id).
    workspace_id: UUID | None = None
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None  # NATS identity of this workspace's monitor (an open developer bus)
    nats_password: Secret | None = None
    nats_seed_file: Path | None = None  # the nkey seed of this workspace's own bus identity (from provisioning)
    nats_identity: str | None = None  # that identity's name (in the server's logs)
    nats_inbox_prefix: str | None = None  # where replies and publish acks reach it (the only inbox it may read)
    workspace_root: Path = Path("/workspace")  # the tree watched, recursively
    monitor_state_dir: Path | None = None  # lock, pid, disk buffer; default <root>/../.coditect-monitor-<workspace>
    monitor_actor: str = "user"  # who makes the changes: user, or an AI agent's name
    monitor_ignore: list[str] = field(default_factory=list)  # extra fnmatch patterns (JSON list)
    monitor_quiet_seconds: float = 0.05  # a path's changes are one event once it has been quiet this long
    monitor_hold_max_seconds: float = 1.0  # a path written without pause still yields an event this often
    monitor_hash_max_bytes: int = 16 * 1024 * 1024  # files larger get no sha256
    monitor_max_in_flight: int = 256  # unacknowledged publishes at once
    monitor_publish_timeout_seconds: float = 5.0
    monitor_buffer_max_events: int = 200_000  # changes kept on disk while the bus is away; past it the oldest go
    monitor_parent_pid: int | None = None  # set by the local supervisor: the monitor ends when that process does
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        bad = [f"{name} must be greater than 0" for name in _ABOVE_ZERO if not getattr(self, name) > 0]
        bad += [f"{name} must be at least {low}" for name, low in _AT_LEAST.items() if getattr(self, name) < low]
        if bad:
            raise SettingsError("; ".join(bad))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> MonitorSettings:
        """The settings the environment gives (``os.environ`` by default); names match in any case."""
        found = {name.upper(): value for name, value in (os.environ if environ is None else environ).items()}
        values: dict[str, Any] = {}
        bad: list[str] = []
        for item in dataclasses.fields(cls):
            names = ALIASES.get(item.name, (PREFIX + item.name.upper(),))
            name = next((name for name in names if name in found), None)
            if name is None:
                if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
                    bad.append(f"{names[0]} is required")
                continue
            try:
                values[item.name] = _READ.get(item.name, str)(found[name])
            except ValueError as error:
                bad.append(f"{name}: {error}")
        if bad:
            raise SettingsError("; ".join(bad))
        return cls(**values)

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

    def workspace(self) -> UUID:
        return self.workspace_id or workspace_id(self.tenant_id, self.user_id)

    def state_dir(self) -> Path:
        if self.monitor_state_dir is not None:
            return self.monitor_state_dir
        root = self.workspace_root.resolve()
        return root.parent / f".coditect-monitor-{self.workspace()}"
