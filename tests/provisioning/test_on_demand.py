"""With provisioning on registration turned off, a new user has no workspace until they ask for one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.provisioning.helpers import wait_status, workspace_of
from tests.session.helpers import call, new_user
from tests.support import Gateway


@pytest.fixture
def provisioning_overrides() -> dict[str, Any]:
    return {"provisioning_on_register": False}


async def test_a_registration_requests_no_workspace_until_the_user_asks(system: Gateway) -> None:
    user = await new_user(system)
    await asyncio.sleep(1.0)  # the consumer has long seen user_registered by now
    status, body = await workspace_of(system, user)
    assert status == 404, body

    status, body, _ = await call(system, "POST", "/workspaces/me/reprovision", user)
    assert status == 202, body
    await wait_status(system, user, "ready")
