"""The Kubernetes backend without a cluster: the per-user manifests validate against the Kubernetes
schemas and carry the labels, limits and isolation; deprovisioning names the whole set; with no
cluster to reach, attempts fail, are retried, and the workspace ends failed with the error kept."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import kubernetes_validate
import pytest

from contracts.provisioning import workspace_id
from services.provisioning.backends.manifests import delete_set, workspace_manifests
from services.provisioning.settings import ProvisioningSettings
from shared.monitorcreds import new_monitor_credentials
from tests.provisioning.helpers import wait_status
from tests.session.helpers import new_user
from tests.support import Gateway

K8S_VERSION = "1.30.0"
TENANT, USER = UUID("11111111-1111-4111-8111-111111111111"), UUID("22222222-2222-4222-8222-222222222222")


def _manifests(**settings: Any) -> list[dict[str, Any]]:
    return workspace_manifests(ProvisioningSettings(**settings), TENANT, USER)


def _by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in manifests}


def test_every_manifest_validates_against_the_kubernetes_schemas() -> None:
    for manifest in _manifests(k8s_storage_class="ssd"):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_a_broken_manifest_is_refused_by_the_validator() -> None:
    deployment = _by_kind(_manifests())["Deployment"]
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_names_labels_volume_and_env_fit_the_existing_plan() -> None:
    manifests = _manifests(k8s_pvc_size="50Gi", k8s_storage_class="ssd")
    kinds = _by_kind(manifests)
    assert list(kinds) == [
        "Namespace",
        "Secret",
        "ResourceQuota",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Deployment",
    ]
    assert kinds["Namespace"]["metadata"]["name"] == f"user-{USER}"
    for manifest in manifests:
        labels = manifest["metadata"]["labels"]
        assert labels["coditect.io/tenant-id"] == str(TENANT) and labels["coditect.io/user-id"] == str(USER)
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == f"user-{USER}"
    pvc = kinds["PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == f"user-workspace-{USER}"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi" and pvc["spec"]["storageClassName"] == "ssd"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    workspace, monitor = pod["containers"]
    env = {e["name"]: e.get("value") for e in workspace["env"]}
    assert env["USER_ID"] == str(USER) and env["TENANT_ID"] == str(TENANT)
    assert workspace["volumeMounts"][0]["mountPath"] == "/workspace"
    assert monitor["command"] == ["python", "-m", "services.monitor"]
    monitor_env = {e["name"]: e.get("value") for e in monitor["env"]}
    assert monitor_env["CODITECT_WORKSPACE_ROOT"] == "/workspace"
    assert monitor_env["CODITECT_TENANT_ID"] == str(TENANT) and monitor_env["CODITECT_USER_ID"] == str(USER)
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == f"user-workspace-{USER}"
    assert "storageClassName" not in _by_kind(_manifests())["PersistentVolumeClaim"]["spec"]


def test_every_container_has_limits_and_the_namespace_a_quota_and_isolation() -> None:
    kinds = _by_kind(_manifests(k8s_memory_limit="3Gi", k8s_quota_memory="6Gi"))
    for container in kinds["Deployment"]["spec"]["template"]["spec"]["containers"]:
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "3Gi"
    hard = kinds["ResourceQuota"]["spec"]["hard"]
    assert hard["limits.memory"] == "6Gi" and hard["persistentvolumeclaims"] == "2"
    policy = kinds["NetworkPolicy"]["spec"]
    assert policy["podSelector"] == {} and policy["policyTypes"] == ["Ingress", "Egress"]
    internet = policy["egress"][-1]["to"][0]["ipBlock"]
    assert (
        internet["cidr"] == "0.0.0.0/0"
        and "10.0.0.0/8" in internet["except"]
        and "169.254.0.0/16" in internet["except"]
    )
    assert kinds["Namespace"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_no_credential_is_written_into_the_pod_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODITECT_MONITOR_NATS_USER", "monitor")
    monkeypatch.setenv("CODITECT_MONITOR_NATS_PASSWORD", "s3cret-value")
    kinds = _by_kind(_manifests())
    assert "s3cret-value" not in str(kinds["Deployment"])
    assert kinds["Secret"]["stringData"] == {"CODITECT_NATS_USER": "monitor", "CODITECT_NATS_PASSWORD": "s3cret-value"}


def test_the_monitor_gets_its_own_key_mounted_into_the_sidecar_only() -> None:
    monitor = new_monitor_credentials(TENANT, USER, workspace_id(TENANT, USER))
    manifests = workspace_manifests(ProvisioningSettings(), TENANT, USER, monitor=monitor)
    for manifest in manifests:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    kinds = _by_kind(manifests)
    assert kinds["Secret"]["stringData"] == {"nats.nk": monitor.seed}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    assert monitor.seed not in str(pod)
    containers = {c["name"]: c for c in pod["containers"]}
    sidecar_env = {e["name"]: e.get("value") for e in containers["file-monitor"]["env"]}
    assert sidecar_env["CODITECT_NATS_SEED_FILE"] == "/etc/coditect-monitor/nats.nk"
    assert sidecar_env["CODITECT_NATS_IDENTITY"] == monitor.identity
    assert sidecar_env["CODITECT_NATS_INBOX_PREFIX"] == monitor.inbox_prefix
    assert {"name": "monitor-key", "mountPath": "/etc/coditect-monitor", "readOnly": True} in containers[
        "file-monitor"
    ]["volumeMounts"]
    # The user's own code runs in the workspace container: no secret reaches it.
    assert all(m["name"] == "workspace" for m in containers["workspace"]["volumeMounts"])
    assert "CODITECT_NATS_SEED_FILE" not in str(containers["workspace"])


def test_deprovision_deletes_the_whole_set_namespace_last() -> None:
    manifests = _manifests()
    deleted = delete_set(manifests)
    assert {(kind, name) for _, kind, _, name in deleted} == {(m["kind"], m["metadata"]["name"]) for m in manifests}
    assert deleted[0][1] == "Deployment" and deleted[-1][1:] == ("Namespace", None, f"user-{USER}")


@pytest.fixture
def provisioning_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> dict[str, Any]:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return {"provisioning_backend": "kubernetes", "provisioning_max_attempts": 2}


async def test_without_a_cluster_the_workspace_fails_after_its_retries_with_the_error_kept(system: Gateway) -> None:
    user = await new_user(system)
    failed = await wait_status(system, user, "failed")
    assert failed["backend"] == "kubernetes" and failed["attempts"] == 2
    assert failed["error"], "the last attempt's error is kept"
