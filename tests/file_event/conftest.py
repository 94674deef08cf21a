"""File-event tests register users through auth: cheap hashes keep them light on shared cores."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def auth_overrides() -> dict[str, Any]:
    return {"argon2_memory_kib": 1024, "argon2_time_cost": 1}


# Small batches and a short fetch wait: tests see several transactions and commit quickly.
FILE_EVENT_TEST_SETTINGS: dict[str, Any] = {
    "ingest_batch_size": 50,
    "ingest_fetch_timeout_seconds": 0.2,
    "ingest_retry_delay_seconds": 0.1,
    "ingest_max_deliver": 3,
}


@pytest.fixture
def file_event_overrides() -> dict[str, Any]:
    return dict(FILE_EVENT_TEST_SETTINGS)
