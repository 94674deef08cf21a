"""Session tests register users through auth: cheap hashes keep them light on shared cores."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def auth_overrides() -> dict[str, Any]:
    return {"argon2_memory_kib": 1024, "argon2_time_cost": 1}
