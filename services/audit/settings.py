"""Audit service settings (``CODITECT_*``, like every process: the common ones and these)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.settings import CommonSettings


class AuditSettings(CommonSettings):
    audit_fetch_batch: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description="Events fetched from the durable consumer at once (also its max_ack_pending).",
    )
    audit_fetch_linger_seconds: float = Field(
        default=0.2,
        ge=0,
        le=1.0,
        description="When a fetch finds less than a batch, wait up to this long for more: fuller batches when events "
        "trickle in (fewer transactions and pull requests per event), for at most this much more latency before an "
        "event is recorded. 0: no wait.",
    )
    audit_commit_chunk: int = Field(
        default=500,
        ge=1,
        le=5000,
        description="Records appended per store transaction, of one tenant or several (FDB limits).",
    )
    audit_ack_wait_seconds: float = Field(
        default=30.0, gt=0, description="An event fetched but not acknowledged (a crash) is redelivered after this."
    )
    audit_checkpoint_every_records: int = Field(
        default=1000, ge=1, description="A tenant's chain is checkpointed after this many new records."
    )
    audit_checkpoint_interval_seconds: float = Field(
        default=10.0, gt=0, description="…or this long after its last checkpoint, if it grew."
    )
    audit_retention_days: float | None = Field(
        default=None,
        gt=0,
        description="Records older than this may be pruned (down to a checkpoint, kept as the anchor); unset keeps "
        "everything. Keep it above the events stream's max age (7 days), which bounds redeliveries.",
    )
    audit_retention_sweep_seconds: float = Field(default=3600.0, gt=0, description="How often pruning runs.")
    audit_key_encryption_key_file: Path | None = Field(
        default=None,
        description="The key-encryption key (32 bytes, base64) sealing the checkpoint signing key in the store; "
        "unset, one is generated into <data_dir>/secrets/audit-kek on first start (embedded store only).",
    )
    handler_concurrency: int = Field(default=8, ge=1, description="Queries each audit subject handles at once.")
