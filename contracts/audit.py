"""Audit service bus API: the per-tenant, hash-chained trail of every domain and security event.

The service consumes ``evt.>`` (``CODITECT_EVENTS``), appends one ``AuditRecord`` per event and
publishes signed ``Checkpoint``s on ``auditcp.<tenant>`` (``CODITECT_AUDIT_CHECKPOINTS``, a stream
that denies delete and purge). The canonical form that ``hash`` covers is ``services/audit/chain.py``
(README, "Audit trail").
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StringConstraints

from contracts.identity import BusRequest
from contracts.subjects import rpc

SERVICE: Final = "audit"

LIST_EVENTS: Final = rpc(SERVICE, "list_events")
VERIFY: Final = rpc(SERVICE, "verify")
EXPORT_PAGE: Final = rpc(SERVICE, "export_page")
GET_KEYS: Final = rpc(SERVICE, "keys")

# The durable consumer of every domain event (one per deployment: replicas share it).
EVENTS_DURABLE: Final = "audit-events"

LIST_LIMIT_DEFAULT: Final = 50
LIST_LIMIT_MAX: Final = 500
EXPORT_PAGE_MAX: Final = 2000
GENESIS_HASH: Final = "0" * 64

ActorKind = Literal["human", "agent", "system"]


class AuditActor(BaseModel):
    kind: ActorKind
    user_id: UUID | None = None
    agent: str | None = None
    ip: str | None = None
    user_agent: str | None = None


class AuditRecord(BaseModel):
    """One entry of a tenant's chain (API.md, "Audit"). Stored and exported exactly as the canonical
    JSON the hash covers, plus ``hash``."""

    seq: int = Field(description="1, 2, 3, … per tenant, without gaps.")
    id: UUID = Field(description="The event id (each event is recorded once).")
    tenant_id: UUID | None
    occurred_at: datetime
    recorded_at: datetime
    type: str = Field(examples=["auth.login_succeeded"])
    actor: AuditActor
    target: str | None
    outcome: Literal["success", "failure"]
    trace_id: str | None
    details: dict[str, Any]
    prev_hash: str = Field(description="hash of seq - 1; 64 zeros for seq 1.")
    hash: str = Field(description="hex SHA-256(prev_hash ‖ canonical JSON of the record without hash).")


class Checkpoint(BaseModel):
    """A signed statement "the chain of ``tenant_id`` had ``hash`` at ``seq``"."""

    tenant_id: str
    seq: int
    hash: str
    signed_at: datetime
    kid: str = Field(description="The audit key (GET /audit/keys) that signed it.")
    signature: str = Field(description="base64url Ed25519 signature of the canonical JSON of the other fields.")


class ChainHead(BaseModel):
    seq: int
    hash: str


Cursor = Annotated[str, StringConstraints(max_length=512)]


class ListAuditEvents(BusRequest):
    since: datetime | None = Field(default=None, description="occurred_at at or after this.")
    until: datetime | None = Field(default=None, description="occurred_at before this.")
    type: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        default=None, description="An event type, or a namespace prefix ending in '.' (e.g. 'auth.')."
    )
    actor: UUID | None = Field(default=None, description="Only records whose actor is this user.")
    limit: Annotated[int, Field(ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT
    cursor: Cursor | None = None


class AuditPage(BaseModel):
    items: list[AuditRecord]
    next_cursor: str | None


class VerifyAudit(BusRequest):
    from_seq: Annotated[int, Field(ge=1)] | None = None
    to_seq: Annotated[int, Field(ge=1)] | None = None


class VerifyResult(BaseModel):
    ok: bool
    checked: int = Field(description="Records whose hash was recomputed.")
    head: ChainHead | None = Field(description="The tenant's newest record; null while its chain is empty.")
    first_bad_seq: int | None = Field(description="The first sequence number that does not verify.")
    reason: str | None = None
    checkpoints_checked: int = 0


class ExportPage(BusRequest):
    kind: Literal["records", "checkpoints"] = "records"
    after_seq: Annotated[int, Field(ge=0)] = 0
    limit: Annotated[int, Field(ge=1, le=EXPORT_PAGE_MAX)] = 500


class ExportChunk(BaseModel):
    """NDJSON lines (each ending in a newline) in sequence order, and where the next page starts."""

    ndjson: str
    count: int
    next_after_seq: int | None


class GetAuditKeys(BusRequest):
    pass


class AuditKeys(BaseModel):
    keys: list[dict[str, Any]]
