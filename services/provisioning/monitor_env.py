"""The one place the monitor's environment is built (local process or Kubernetes sidecar): the NATS
identity a workspace's monitor connects with is wired here."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePath

from services.provisioning.settings import ProvisioningSettings


@dataclass(frozen=True)
class MonitorIdentity:
    """Where a monitor's issued identity lies: its seed file (0600, in its state folder) and names."""

    identity: str
    inbox_prefix: str
    seed_file: PurePath


def monitor_environment(
    settings: ProvisioningSettings,
    *,
    tenant_id: object,
    user_id: object,
    workspace_id: object,
    root: Path | str,
    state_dir: Path | str,
    credentials: MonitorIdentity | None = None,
) -> dict[str, str]:
    """``CODITECT_*`` variables of ``services.monitor.settings.MonitorSettings`` for one workspace.

    Credentials: the workspace's own bus identity when one was issued (``credentials``: a monitor that
    may publish only on its own ``fevt.<tenant>.<user>.<workspace>``, shared/monitorcreds.py); else (an
    open developer bus) the NATS user/password given to provisioning for monitors
    (``CODITECT_MONITOR_NATS_USER``/``_PASSWORD`` in its environment), if any."""
    env = {
        "CODITECT_NATS_URL": settings.monitor_nats_url or settings.nats_url,
        "CODITECT_TENANT_ID": str(tenant_id),
        "CODITECT_USER_ID": str(user_id),
        "CODITECT_WORKSPACE_ID": str(workspace_id),
        "CODITECT_WORKSPACE_ROOT": str(root),
        "CODITECT_MONITOR_STATE_DIR": str(state_dir),
        "CODITECT_LOG_LEVEL": settings.log_level,
    }
    if settings.monitor_ignore:
        env["CODITECT_MONITOR_IGNORE"] = json.dumps(settings.monitor_ignore)
    if credentials is not None:
        env["CODITECT_NATS_SEED_FILE"] = str(credentials.seed_file)
        env["CODITECT_NATS_IDENTITY"] = credentials.identity
        env["CODITECT_NATS_INBOX_PREFIX"] = credentials.inbox_prefix
        return env
    for name in ("NATS_USER", "NATS_PASSWORD"):
        value = os.environ.get(f"CODITECT_MONITOR_{name}")
        if value:
            env[f"CODITECT_{name}"] = value
    return env
