"""The Kubernetes backend: the per-user manifests (``manifests.py``) applied with server-side apply
through lightkube's async client, and deleted on deprovision.

lightkube rather than the official ``kubernetes`` client: it is asyncio-native (the official client
blocks and would need a thread per call), has server-side apply as a first-class call
(``apply(..., field_manager=..., force=...)``), and takes plain dicts through ``codecs.from_dict``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

from contracts import provisioning as api
from services.provisioning.backends import WorkspaceRef
from services.provisioning.backends.manifests import (
    DEPLOYMENT,
    delete_set,
    namespace_name,
    pvc_name,
    workspace_manifests,
)
from services.provisioning.settings import ProvisioningSettings

if TYPE_CHECKING:
    from lightkube import AsyncClient

    from services.provisioning.monitor_keys import MonitorKeys

log = logging.getLogger(__name__)


class KubernetesBackend:
    name: Final[api.Backend] = "kubernetes"

    def __init__(
        self, settings: ProvisioningSettings, client: AsyncClient | None = None, *, keys: MonitorKeys | None = None
    ) -> None:
        self.settings = settings
        self._client = client
        self.keys = keys

    def client(self) -> AsyncClient:
        """Created on first use (in-cluster service account, else KUBECONFIG): a missing cluster fails an
        attempt, which is retried and then kept as the workspace's error."""
        if self._client is None:
            from lightkube import AsyncClient

            self._client = AsyncClient(field_manager=self.settings.k8s_field_manager)
        return self._client

    async def provision(self, ref: WorkspaceRef) -> dict[str, str]:
        from lightkube.codecs import from_dict

        client = self.client()
        # A new key on every (re)provisioning: the Secret is applied with it, the earlier key withdrawn.
        monitor = None if self.keys is None else await self.keys.issue(ref.tenant_id, ref.user_id, ref.workspace_id)
        for manifest in workspace_manifests(self.settings, ref.tenant_id, ref.user_id, monitor=monitor):
            await client.apply(from_dict(manifest), field_manager=self.settings.k8s_field_manager, force=True)
        return {
            "namespace": namespace_name(ref.user_id),
            "pvc": pvc_name(ref.user_id),
            "pod": f"deployment/{DEPLOYMENT}",
        }

    async def deprovision(self, ref: WorkspaceRef) -> None:
        from lightkube import ApiError
        from lightkube.codecs import resource_registry

        client = self.client()
        for api_version, kind, namespace, name in delete_set(
            workspace_manifests(self.settings, ref.tenant_id, ref.user_id)
        ):
            resource: Any = resource_registry.load(api_version, kind)
            try:
                await client.delete(resource, name, namespace=namespace)
            except ApiError as error:
                if error.status.code != 404:
                    raise
        if self.keys is not None:
            await self.keys.withdraw(ref.workspace_id)

    async def attach(self, refs: list[WorkspaceRef]) -> None:
        """Nothing to re-attach: the cluster keeps the pods (and their monitor sidecars) running."""

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()

    def close(self) -> None:
        """The HTTP client is dropped with the process."""
