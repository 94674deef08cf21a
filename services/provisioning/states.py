"""The workspace state machine as plain functions over records: no store, no bus, no clock of its own.

    requested → provisioning → ready
                     ↘ (attempt failed, attempts left) provisioning again after a backoff
                     ↘ (no attempts left) failed
    ready | failed → (reprovision) requested …
    any but deleted → (user removed) deprovisioning → deleted

A replica works on a workspace only under a claim (a lease token with an expiry, written in the same
transaction that reads the state), so two replicas never provision the same workspace at once, and a
crashed replica's claim simply runs out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID, uuid4

from pydantic import BaseModel

from contracts import provisioning as api


class WorkspaceRecord(api.Workspace):
    """A stored workspace: what clients see, and the bookkeeping of the work on it."""

    generation: int = 0
    next_attempt_at: datetime | None = None
    lease: UUID | None = None
    lease_until: datetime | None = None

    def public(self) -> api.Workspace:
        return api.Workspace.model_validate(self.model_dump(include=set(api.Workspace.model_fields)))


WORKING: frozenset[api.Status] = frozenset({"requested", "provisioning", "deprovisioning"})
REPROVISIONABLE: frozenset[api.Status] = frozenset({"ready", "failed"})


class Claim(BaseModel):
    """What a replica holds while it works: which workspace, which generation, its lease token."""

    tenant_id: UUID
    user_id: UUID
    generation: int
    lease: UUID
    deprovision: bool


def new(tenant_id: UUID, user_id: UUID, backend: api.Backend, now: datetime) -> WorkspaceRecord:
    return WorkspaceRecord(
        id=api.workspace_id(tenant_id, user_id),
        user_id=user_id,
        tenant_id=tenant_id,
        backend=backend,
        status="requested",
        created_at=now,
        updated_at=now,
        next_attempt_at=now,
    )


def _new_round(record: WorkspaceRecord, status: api.Status, now: datetime) -> WorkspaceRecord:
    """The record starting a new round in ``status``: attempts reset, any claim dropped, and a new
    generation, so work still running for the old round is superseded."""
    return record.model_copy(
        update={
            "status": status,
            "attempts": 0,
            "error": None,
            "generation": record.generation + 1,
            "next_attempt_at": now,
            "lease": None,
            "lease_until": None,
            "updated_at": now,
        }
    )


def reprovision(record: WorkspaceRecord, now: datetime) -> WorkspaceRecord | None:
    """A new provisioning round from ready or failed; None when one is already under way."""
    if record.status in ("requested", "provisioning"):
        return None
    return _new_round(record, "requested", now)


def deprovision(record: WorkspaceRecord, now: datetime) -> WorkspaceRecord | None:
    """Start removing the workspace (any work on it is superseded); None when already on the way out."""
    if record.status in ("deprovisioning", "deleted"):
        return None
    return _new_round(record, "deprovisioning", now)


def due(record: WorkspaceRecord, now: datetime) -> bool:
    """Work is waiting on it, its retry time has come and nobody holds a live claim on it."""
    if record.status not in WORKING:
        return False
    if record.next_attempt_at is not None and record.next_attempt_at > now:
        return False
    return record.lease_until is None or record.lease_until <= now


def claim(record: WorkspaceRecord, now: datetime, lease_seconds: float) -> tuple[WorkspaceRecord, Claim] | None:
    if not due(record, now):
        return None
    token = uuid4()
    update: dict[str, object] = {
        "lease": token,
        "lease_until": now + timedelta(seconds=lease_seconds),
        "attempts": record.attempts + 1,
        "updated_at": now,
    }
    if record.status == "requested":
        update["status"] = "provisioning"
    claimed = record.model_copy(update=update)
    return claimed, Claim(
        tenant_id=record.tenant_id,
        user_id=record.user_id,
        generation=record.generation,
        lease=token,
        deprovision=record.status == "deprovisioning",
    )


def holds(record: WorkspaceRecord | None, held: Claim) -> bool:
    """Whether a claim is still the one that counts (not superseded by a reprovision or removal)."""
    return record is not None and record.generation == held.generation and record.lease == held.lease


def succeeded(record: WorkspaceRecord, details: dict[str, str], now: datetime) -> WorkspaceRecord:
    status: api.Status = "deleted" if record.status == "deprovisioning" else "ready"
    return record.model_copy(
        update={
            "status": status,
            "details": details if status == "ready" else record.details,
            "error": None,
            "lease": None,
            "lease_until": None,
            "next_attempt_at": None,
            "updated_at": now,
        }
    )


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before attempt ``attempts + 1``: base, 2·base, 4·base … up to cap."""
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


def attempt_failed(
    record: WorkspaceRecord, error: str, now: datetime, *, max_attempts: int, base: float, cap: float
) -> WorkspaceRecord:
    """Retry later, or fail for good once the attempts are spent (a removal keeps retrying: it must end)."""
    update: dict[str, object] = {"error": error, "lease": None, "lease_until": None, "updated_at": now}
    if record.status == "provisioning" and record.attempts >= max_attempts:
        update["status"] = "failed"
        update["next_attempt_at"] = None
    else:
        update["next_attempt_at"] = now + timedelta(seconds=backoff(record.attempts, base, cap))
    return record.model_copy(update=update)
