"""Provisioning tests run the real provisioning service in ``system``; cheap hashes keep registrations light."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def auth_overrides() -> dict[str, Any]:
    return {"argon2_memory_kib": 1024, "argon2_time_cost": 1}


@pytest.fixture
def provisioning_in_process() -> bool:
    return True
