"""Refresh families expire when idle, and finished families are purged from the store."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import jwt
import pytest

from services.auth import repository as repo
from tests.auth.helpers import get, login, post, registered_and_logged_in
from tests.support import Gateway


@pytest.fixture
def auth_overrides() -> dict[str, Any]:
    return {"refresh_idle_ttl_seconds": 1}


async def test_an_idle_family_expires_and_is_purged_at_the_next_login(system: Gateway) -> None:
    registered, old = await registered_and_logged_in(system)
    await asyncio.sleep(1.2)
    status, body, _ = await post(system, "/auth/refresh", {"refresh_token": old["refresh_token"]})
    assert status == 401 and body["error"]["code"] == "REFRESH_TOKEN_INVALID"

    new = await login(system, registered["user"]["email"])
    status, devices = await get(system, "/auth/devices", new["access_token"])
    assert status == 200 and len(devices["data"]["items"]) == 1

    old_sid = UUID(jwt.decode(old["access_token"], options={"verify_signature": False})["sid"])
    store = system.services["auth"].ctx.store
    session, hashes = await store.run(
        lambda tx: (
            repo.get_session(tx, old_sid),
            tx.get_range(*(lambda r: (r.start, r.stop))(repo.SESSION_REFRESH[str(old_sid)].range())),
        )
    )
    assert session is None and hashes == []
