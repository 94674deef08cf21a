"""File-event service settings (``CODITECT_*``, like every process: the common ones and these)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class FileEventSettings(CommonSettings):
    ingest_batch_size: int = Field(
        default=1000,
        ge=1,
        le=5000,
        # 1,000 rather than 500: the batch's fixed costs (fetch round trip, commit, file.changed) halve per
        # event (bench: 0.29 → 0.40 x the raw publish back to back); a batch's writes stay under 1 MB.
        description="Messages one fetch takes from the file stream (one transaction).",
    )
    ingest_fetch_timeout_seconds: float = Field(
        default=0.5, gt=0, description="How long a fetch waits for a full batch before taking what came."
    )
    ingest_concurrency: int = Field(
        default=2,
        ge=1,
        le=8,
        description="Fetched batches handled at once (a batch's transaction runs while the previous one commits).",
    )
    ingest_transaction_bytes: int = Field(
        default=4_000_000,
        ge=10_000,
        le=9_000_000,
        description="A fetched batch whose writes would pass this is split into several transactions "
        "(FoundationDB refuses 10 MB; its guidance is to stay under 1 MB to 5 MB).",
    )
    ingest_tree_entries_per_transaction: int = Field(
        default=1000,
        ge=1,
        description="Entries below a moved or deleted directory one transaction carries; a bigger directory "
        "takes several (services/file_event/trees.py).",
    )
    ingest_tree_bytes_per_transaction: int = Field(
        default=1_000_000,
        ge=10_000,
        le=4_000_000,
        description="About how many bytes of writes one transaction spends carrying a directory's entries.",
    )
    ingest_tree_max_attempts: int = Field(
        default=5,
        ge=1,
        description="Failed attempts at carrying one directory's entries on (with a growing pause between them) "
        "before its job is parked with the error: a job that keeps failing must not hold up the others.",
    )
    ingest_tree_retry_seconds: float = Field(
        default=1.0, gt=0, description="The pause after a tree job's first failure; it doubles with each one after."
    )
    ingest_max_deliver: int = Field(
        default=10, ge=2, description="Deliveries of a message that keeps failing before it is dead-lettered."
    )
    ingest_ack_wait_seconds: float = Field(
        default=30.0, gt=0, description="A delivered message not acknowledged within this comes again."
    )
    ingest_max_ack_pending: int = Field(
        default=20_000, ge=1, description="Messages delivered and not yet acknowledged, across the replicas."
    )
    ingest_retry_delay_seconds: float = Field(
        default=2.0, gt=0, description="A batch that failed (the store is down) comes back after this."
    )
    query_max_scan: int = Field(
        default=5000, ge=100, description="Entries one page of events may scan to fill itself; past it, a short page."
    )
    handler_concurrency: int = Field(default=16, ge=1, description="Requests each subject handles at once.")
