"""The one place the monitor's environment is built (local process or Kubernetes sidecar): the NATS
identity a workspace's monitor connects with is wired here."""

from __future__ import annotations

import json
import os
from pathlib import Path

from services.provisioning.settings import ProvisioningSettings


def monitor_environment(
    settings: ProvisioningSettings,
    *,
    tenant_id: object,
    user_id: object,
    workspace_id: object,
    root: Path | str,
    state_dir: Path | str,
) -> dict[str, str]:
    """``CODITECT_*`` variables of ``services.monitor.settings.MonitorSettings`` for one workspace.

    Credentials: today every monitor gets the NATS user/password given to provisioning for monitors
    (``CODITECT_MONITOR_NATS_USER``/``_PASSWORD`` in provisioning's environment, if any); per-workspace
    identities (a monitor that may publish only on its own ``fevt.<tenant>.<user>.<workspace>``) are
    to be issued here."""
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
    for name in ("NATS_USER", "NATS_PASSWORD"):
        value = os.environ.get(f"CODITECT_MONITOR_{name}")
        if value:
            env[f"CODITECT_{name}"] = value
    return env
