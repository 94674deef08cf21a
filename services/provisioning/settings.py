"""Provisioning service settings (``CODITECT_*``, like every process: the common ones and these)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from shared.settings import CommonSettings


class ProvisioningSettings(CommonSettings):
    provisioning_backend: Literal["local", "kubernetes"] = Field(
        default="local", description="Where workspaces are made: a directory + monitor process, or Kubernetes."
    )
    provisioning_on_register: bool = Field(
        default=True,
        description="Request a workspace when a user registers or is added. Off: only POST /workspaces/me/"
        "reprovision requests one (hosts that provision on demand; the request-path benchmarks).",
    )
    provisioning_max_attempts: int = Field(default=5, ge=1, description="Attempts before a workspace is failed.")
    provisioning_retry_base_seconds: float = Field(
        default=0.5, gt=0, description="First retry delay; doubled at each failed attempt."
    )
    provisioning_retry_max_seconds: float = Field(default=60.0, gt=0, description="Longest delay between attempts.")
    provisioning_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a replica owns a workspace it works on; a crashed replica's claim ends after it.",
    )
    provisioning_reconcile_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often workspaces left mid-way (crash, retry due) are picked up."
    )
    provisioning_step_delay_seconds: float = Field(
        default=0.0,
        ge=0,
        description="A pause inside each provisioning attempt, after the claim (tests kill the service there).",
    )

    # Local backend.
    workspaces_dir: Path | None = Field(
        default=None, description="Root of the local workspaces; default <data_dir>/workspaces."
    )
    monitor_restart_backoff_max_seconds: float = Field(
        default=10.0, gt=0, description="Longest wait before a dead monitor process is started again."
    )
    monitor_spare: bool = Field(
        default=True,
        description="Keep one monitor process started and waiting, handed the next workspace (its start-up, "
        "about half a second, is then not part of provisioning); costs one idle process (about 30 MB).",
    )
    monitor_ignore: list[str] = Field(
        default_factory=list, description="Extra ignore patterns handed to every monitor (fnmatch, JSON list)."
    )
    monitor_nats_url: str | None = Field(
        default=None, description="The NATS URL monitors connect to; default the service's own nats_url."
    )

    # Workspace monitors' bus identities (shared/buscallout.py).
    monitor_issuer_seed_file: Path | None = Field(
        default=None,
        description="The account nkey seed nats-server trusts for callout answers (<bus>/monitor-issuer.nk). "
        "Set: every workspace monitor gets its own key, admitted by this service. Unset (an open "
        "developer server): monitors connect as CODITECT_MONITOR_NATS_USER/_PASSWORD, if given.",
    )
    monitor_authorization_ttl_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long an admitted monitor's authorization lasts before its connection asks again: "
        "the longest a withdrawn key stays connected.",
    )

    # Kubernetes backend.
    k8s_workspace_image: str = "ghcr.io/coditect/workspace:latest"
    k8s_monitor_image: str = "ghcr.io/coditect/backend:latest"
    k8s_storage_class: str | None = Field(default=None, description="PVC storage class; unset: the cluster default.")
    k8s_pvc_size: str = "50Gi"
    k8s_cpu_request: str = "250m"
    k8s_cpu_limit: str = "2"
    k8s_memory_request: str = "512Mi"
    k8s_memory_limit: str = "4Gi"
    k8s_monitor_memory_limit: str = "128Mi"
    k8s_quota_cpu: str = "4"
    k8s_quota_memory: str = "8Gi"
    k8s_quota_storage: str = "100Gi"
    k8s_nats_namespace: str = Field(default="coditect-app", description="Namespace NATS runs in (egress allowed).")
    k8s_field_manager: str = "coditect-provisioning"

    def workspaces_root(self) -> Path:
        return self.workspaces_dir if self.workspaces_dir is not None else self.data_dir / "workspaces"

    def monitors_root(self) -> Path:
        """Monitor state (lock, pid, disk buffer, log), outside the watched trees."""
        return self.data_dir / "monitors"
