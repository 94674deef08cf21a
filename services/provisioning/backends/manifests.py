"""Per-user Kubernetes objects as plain data: a pure function of the workspace and the settings, so
they are validated against the Kubernetes schemas without a cluster (tests/provisioning).

Per user (fitting the existing deployment's plan): Namespace ``user-{user}``, PVC
``user-workspace-{user}``, a ``workspace`` Deployment (one pod: the workspace container with
``USER_ID``/``TENANT_ID``/``WORKSPACE_ID`` and the volume at ``/workspace``, and the file monitor as a
sidecar), a NetworkPolicy and a ResourceQuota, every one labelled with tenant and user.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Final
from uuid import UUID

from contracts import provisioning as api
from services.provisioning.monitor_env import MonitorIdentity, monitor_environment
from services.provisioning.settings import ProvisioningSettings
from shared.monitorcreds import MonitorCredentials

Manifest = dict[str, Any]

MANAGED_BY: Final = "coditect-provisioning"
WORKSPACE_MOUNT: Final = "/workspace"
MONITOR_STATE_MOUNT: Final = "/var/lib/coditect-monitor"
MONITOR_KEY_MOUNT: Final = "/etc/coditect-monitor"
MONITOR_SEED_KEY: Final = "nats.nk"
DEPLOYMENT: Final = "workspace"
MONITOR_SECRET: Final = "monitor-nats"
_SECRET_VARIABLES: Final = ("CODITECT_NATS_USER", "CODITECT_NATS_PASSWORD")
# Egress to the internet (packages, git), never to cluster-internal or link-local (cloud metadata) ranges.
_PRIVATE_RANGES: Final = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]


def namespace_name(user_id: UUID) -> str:
    return f"user-{user_id}"


def pvc_name(user_id: UUID) -> str:
    return f"user-workspace-{user_id}"


def labels(tenant_id: UUID, user_id: UUID) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "coditect",
        "coditect.io/tenant-id": str(tenant_id),
        "coditect.io/user-id": str(user_id),
        "coditect.io/workspace-id": str(api.workspace_id(tenant_id, user_id)),
    }


def _meta(name: str, namespace: str | None, tenant_id: UUID, user_id: UUID) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels(tenant_id, user_id)}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _restricted_container() -> dict[str, Any]:
    """What the ``restricted`` Pod Security Standard asks of every container."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def workspace_manifests(
    settings: ProvisioningSettings,
    tenant_id: UUID,
    user_id: UUID,
    *,
    session_id: UUID | None = None,
    monitor: MonitorCredentials | None = None,
) -> list[Manifest]:
    """Everything one user's workspace needs, in apply order (the Namespace first). ``monitor``: the
    monitor's own bus key, put in the namespace's Secret and mounted into the sidecar only."""
    ns = namespace_name(user_id)
    workspace = api.workspace_id(tenant_id, user_id)
    pod_labels = {**labels(tenant_id, user_id), "app.kubernetes.io/name": "workspace"}
    identity = (
        None
        if monitor is None
        else MonitorIdentity(
            identity=monitor.identity,
            inbox_prefix=monitor.inbox_prefix,
            seed_file=PurePosixPath(MONITOR_KEY_MOUNT) / MONITOR_SEED_KEY,
        )
    )
    monitor_env = monitor_environment(
        settings,
        tenant_id=tenant_id,
        user_id=user_id,
        workspace_id=workspace,
        root=WORKSPACE_MOUNT,
        state_dir=MONITOR_STATE_MOUNT,
        credentials=identity,
    )
    secrets: dict[str, str] = {name: monitor_env.pop(name) for name in _SECRET_VARIABLES if name in monitor_env}
    if monitor is not None:
        secrets[MONITOR_SEED_KEY] = monitor.seed
    workspace_env = [
        {"name": "USER_ID", "value": str(user_id)},
        {"name": "TENANT_ID", "value": str(tenant_id)},
        {"name": "WORKSPACE_ID", "value": str(workspace)},
    ]
    if session_id is not None:
        workspace_env.append({"name": "SESSION_ID", "value": str(session_id)})
    sidecar_env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(monitor_env.items())]
    sidecar_env += [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": MONITOR_SECRET, "key": name, "optional": True}}}
        for name in _SECRET_VARIABLES
    ]
    pvc_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": settings.k8s_pvc_size}},
    }
    if settings.k8s_storage_class:
        pvc_spec["storageClassName"] = settings.k8s_storage_class
    manifests: list[Manifest] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ns,
                "labels": {
                    **labels(tenant_id, user_id),
                    "pod-security.kubernetes.io/enforce": "restricted",
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(MONITOR_SECRET, ns, tenant_id, user_id),
            "type": "Opaque",
            "stringData": secrets,
        },
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": _meta("workspace-quota", ns, tenant_id, user_id),
            "spec": {
                "hard": {
                    "requests.cpu": settings.k8s_quota_cpu,
                    "limits.cpu": settings.k8s_quota_cpu,
                    "requests.memory": settings.k8s_quota_memory,
                    "limits.memory": settings.k8s_quota_memory,
                    "requests.storage": settings.k8s_quota_storage,
                    "persistentvolumeclaims": "2",
                    "pods": "4",
                    "services": "0",
                }
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("workspace-isolation", ns, tenant_id, user_id),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                # Only the platform's own namespace may open connections to a workspace.
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": settings.k8s_nats_namespace}
                                }
                            }
                        ]
                    }
                ],
                "egress": [
                    {
                        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    },
                    {
                        "to": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": settings.k8s_nats_namespace}
                                }
                            }
                        ],
                        "ports": [{"protocol": "TCP", "port": 4222}],
                    },
                    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": _PRIVATE_RANGES}}]},
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta(pvc_name(user_id), ns, tenant_id, user_id),
            "spec": pvc_spec,
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(DEPLOYMENT, ns, tenant_id, user_id),
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},  # a ReadWriteOnce volume: never two pods at once
                "selector": {"matchLabels": {"app.kubernetes.io/name": "workspace"}},
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 1000,
                            "runAsGroup": 1000,
                            "fsGroup": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "workspace",
                                "image": settings.k8s_workspace_image,
                                "env": workspace_env,
                                "workingDir": WORKSPACE_MOUNT,
                                "volumeMounts": [
                                    {"name": "workspace", "mountPath": WORKSPACE_MOUNT, "subPath": "files"}
                                ],
                                "resources": {
                                    "requests": {
                                        "cpu": settings.k8s_cpu_request,
                                        "memory": settings.k8s_memory_request,
                                    },
                                    "limits": {"cpu": settings.k8s_cpu_limit, "memory": settings.k8s_memory_limit},
                                },
                                "securityContext": _restricted_container(),
                            },
                            {
                                "name": "file-monitor",
                                "image": settings.k8s_monitor_image,
                                "command": ["python", "-m", "services.monitor"],
                                "env": sidecar_env,
                                "volumeMounts": [
                                    {"name": "workspace", "mountPath": WORKSPACE_MOUNT, "subPath": "files"},
                                    {"name": "workspace", "mountPath": MONITOR_STATE_MOUNT, "subPath": "monitor"},
                                    {"name": "monitor-key", "mountPath": MONITOR_KEY_MOUNT, "readOnly": True},
                                ],
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"cpu": "500m", "memory": settings.k8s_monitor_memory_limit},
                                },
                                "securityContext": {**_restricted_container(), "readOnlyRootFilesystem": True},
                            },
                        ],
                        "volumes": [
                            {"name": "workspace", "persistentVolumeClaim": {"claimName": pvc_name(user_id)}},
                            # The monitor's key, readable by the sidecar's user only; the workspace
                            # container (the user's code) mounts no secret.
                            {
                                "name": "monitor-key",
                                "secret": {
                                    "secretName": MONITOR_SECRET,
                                    "items": [{"key": MONITOR_SEED_KEY, "path": MONITOR_SEED_KEY, "mode": 0o400}],
                                    "optional": True,
                                },
                            },
                        ],
                    },
                },
            },
        },
    ]
    return manifests


def delete_set(manifests: list[Manifest]) -> list[tuple[str, str, str | None, str]]:
    """What deprovisioning deletes, in order: (apiVersion, kind, namespace, name), the Namespace last
    (deleting it would take the rest with it; naming each makes a partial removal finish)."""
    return [
        (m["apiVersion"], m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]) for m in reversed(manifests)
    ]
