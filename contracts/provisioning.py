"""Provisioning service bus API: one workspace per user, its state, its events."""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from contracts.identity import BusRequest
from contracts.ids import workspace_id as workspace_id  # derived ids live where a monitor can import them
from contracts.subjects import event, rpc

SERVICE: Final = "provisioning"

# Event types (published on ``evt.workspace.<name>``; namespace in contracts.subjects.EVENT_NAMESPACES).
WORKSPACE_REQUESTED: Final = "workspace.requested"
WORKSPACE_PROVISIONED: Final = "workspace.provisioned"
WORKSPACE_FAILED: Final = "workspace.failed"
WORKSPACE_DEPROVISIONED: Final = "workspace.deprovisioned"

# Requests and replies (``rpc.provisioning.<operation>``).
GET: Final = rpc(SERVICE, "get")
REPROVISION: Final = rpc(SERVICE, "reprovision")

EVENT_TYPES: Final = (WORKSPACE_REQUESTED, WORKSPACE_PROVISIONED, WORKSPACE_FAILED, WORKSPACE_DEPROVISIONED)
EVENT_SUBJECTS: Final = tuple(event(*type_.split(".", 1)) for type_ in EVENT_TYPES)

Status = Literal["requested", "provisioning", "ready", "failed", "deprovisioning", "deleted"]
STATUSES: Final[tuple[Status, ...]] = ("requested", "provisioning", "ready", "failed", "deprovisioning", "deleted")
Backend = Literal["local", "kubernetes"]


class GetWorkspace(BusRequest):
    """The caller's own workspace (404 until one was requested)."""


class ReprovisionWorkspace(BusRequest):
    """Provision the caller's workspace again (from ready or failed); accepted, done in the background."""


class Workspace(BaseModel):
    """A user's workspace as clients see it."""

    id: UUID
    user_id: UUID
    tenant_id: UUID
    backend: Backend
    status: Status
    error: str | None = Field(default=None, description="Why the last attempt failed (kept once failed).")
    details: dict[str, str] = Field(
        default_factory=dict,
        description="What the backend made: local `path`; kubernetes `namespace`, `pvc`, `pod`.",
    )
    attempts: int = Field(default=0, description="Attempts of the current provisioning (reset by a reprovision).")
    created_at: datetime
    updated_at: datetime


class WorkspaceEventData(BaseModel):
    """``data`` of every workspace event: the owner (live push routes on it) and the workspace."""

    user_id: UUID
    workspace: Workspace
