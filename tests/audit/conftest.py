"""Audit tests: cheap hashes for the users they register, checkpoints every few records, a short ack wait."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def auth_overrides() -> dict[str, Any]:
    return {"argon2_memory_kib": 1024, "argon2_time_cost": 1}


@pytest.fixture
def audit_overrides() -> dict[str, Any]:
    return {"audit_checkpoint_every_records": 5, "audit_checkpoint_interval_seconds": 0.3, "audit_ack_wait_seconds": 2}
