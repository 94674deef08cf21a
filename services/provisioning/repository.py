"""The provisioning service's key layout under ``("provisioning", …)`` and the transaction steps over it.

    ("provisioning", "workspace", tenant, user)   → WorkspaceRecord   one per user, whatever its state
    ("provisioning", "working", tenant, user)     → ""                requested, provisioning or
                                                                       deprovisioning: what the reconcile
                                                                       loop looks at
    ("provisioning", "ready", tenant, user)       → ""                ready workspaces (monitors to attach)
    ("provisioning", "processed", event_id)       → processed_us      consumed events (idempotency)
    ("provisioning", "processed_at", us, event_id) → ""               markers by age, pruned once the
                                                                       stream can no longer redeliver them
    ("provisioning", "monitor_key", public_key)   → MonitorKey        workspace monitors' bus keys: who
                                                                       the authorization callout admits
    ("provisioning", "monitor_keys", workspace, public_key) → ""      a workspace's keys (to withdraw)
    ("provisioning", "outbox", …)                 → staged events
    ("provisioning", "outbox_dead_letter", …)     → staged events that could not be decoded

The workspace key is the (tenant, user) pair, so a second request for the same user finds the first
one's record in the same transaction: a duplicate never makes a second workspace. Every function
takes the transaction as its first argument and holds no awaits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import fdb.tuple
from fdb.subspace_impl import Subspace
from pydantic import BaseModel

from services.provisioning.states import WORKING, WorkspaceRecord
from shared.store import Transaction

ROOT = Subspace(("provisioning",))
WORKSPACE = ROOT["workspace"]
WORKING_INDEX = ROOT["working"]
READY_INDEX = ROOT["ready"]
PROCESSED = ROOT["processed"]
PROCESSED_AT = ROOT["processed_at"]
MONITOR_KEY = ROOT["monitor_key"]
MONITOR_KEYS = ROOT["monitor_keys"]
OUTBOX = ROOT["outbox"]
OUTBOX_DEAD_LETTER = ROOT["outbox_dead_letter"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MonitorKey(BaseModel):
    """A workspace monitor's bus key as issued: the identity and the one subject it may publish on."""

    identity: str
    subject: str
    workspace_id: UUID


def _key(space: Subspace, tenant_id: UUID, user_id: UUID) -> bytes:
    key: bytes = space.pack((str(tenant_id), str(user_id)))
    return key


def get(tx: Transaction, tenant_id: UUID, user_id: UUID) -> WorkspaceRecord | None:
    raw = tx.get(_key(WORKSPACE, tenant_id, user_id))
    return None if raw is None else WorkspaceRecord.model_validate_json(raw)


def save(tx: Transaction, before: WorkspaceRecord | None, after: WorkspaceRecord) -> None:
    """Write a workspace and keep its index entries in step with its state."""
    tx.set(_key(WORKSPACE, after.tenant_id, after.user_id), after.model_dump_json().encode())
    for space, holds in ((WORKING_INDEX, lambda r: r.status in WORKING), (READY_INDEX, lambda r: r.status == "ready")):
        was = before is not None and holds(before)
        now = holds(after)
        if now and not was:
            tx.set(_key(space, after.tenant_id, after.user_id), b"")
        elif was and not now:
            tx.clear(_key(space, after.tenant_id, after.user_id))


def _scan(tx: Transaction, space: Subspace, limit: int) -> list[WorkspaceRecord]:
    rows = tx.get_range(space.range().start, space.range().stop, limit=limit)
    found = []
    for key, _ in rows:
        tenant, user = space.unpack(key)
        record = get(tx, UUID(tenant), UUID(user))
        if record is not None:
            found.append(record)
    return found


def working(tx: Transaction, limit: int) -> list[WorkspaceRecord]:
    return _scan(tx, WORKING_INDEX, limit)


def ready(tx: Transaction, limit: int) -> list[WorkspaceRecord]:
    return _scan(tx, READY_INDEX, limit)


def processed(tx: Transaction, event_id: UUID) -> bool:
    return tx.get(PROCESSED.pack((str(event_id),))) is not None


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def mark_processed(tx: Transaction, event_id: UUID, at: datetime) -> None:
    at_us = _micros(at)
    tx.set(PROCESSED.pack((str(event_id),)), fdb.tuple.pack((at_us,)))
    tx.set(PROCESSED_AT.pack((at_us, str(event_id))), b"")


def prune_processed(tx: Transaction, processed_before: datetime, limit: int) -> int:
    rows = tx.get_range(PROCESSED_AT.range().start, PROCESSED_AT.pack((_micros(processed_before),)), limit=limit)
    for key, _ in rows:
        tx.clear(PROCESSED.pack((PROCESSED_AT.unpack(key)[1],)))
        tx.clear(key)
    return len(rows)


def monitor_key(tx: Transaction, public_key: str) -> MonitorKey | None:
    raw = tx.get(MONITOR_KEY.pack((public_key,)))
    return None if raw is None else MonitorKey.model_validate_json(raw)


def withdraw_monitor_keys(tx: Transaction, workspace_id: UUID) -> int:
    """Forget every key of a workspace's monitor; how many there were."""
    prefix = MONITOR_KEYS[str(workspace_id)]
    rows = tx.get_range(prefix.range().start, prefix.range().stop)
    for key, _ in rows:
        tx.clear(MONITOR_KEY.pack((prefix.unpack(key)[0],)))
    tx.clear_range(prefix.range().start, prefix.range().stop)
    return len(rows)


def add_monitor_key(tx: Transaction, public_key: str, key: MonitorKey) -> None:
    tx.set(MONITOR_KEY.pack((public_key,)), key.model_dump_json().encode())
    tx.set(MONITOR_KEYS.pack((str(key.workspace_id), public_key)), b"")
