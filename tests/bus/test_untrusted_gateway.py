"""A gateway whose caller key the services do not trust cannot act for any user: its authenticated
requests are refused (503 CALLER_UNVERIFIED, the configuration is at fault), public ones still work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.busauth import write_private
from shared.callerproof import new_signing_key
from tests.auth.helpers import get, registered_and_logged_in
from tests.support import Gateway


@pytest.fixture
def gateway_overrides(tmp_path: Path) -> dict[str, Any]:
    key = tmp_path / "untrusted-caller.key"
    write_private(key, new_signing_key().encode())
    return {"caller_signing_key_file": key}


async def test_a_gateway_with_an_untrusted_caller_key_cannot_act_for_users(system: Gateway) -> None:
    _, tokens = await registered_and_logged_in(system)  # public: no caller
    status, body = await get(system, "/users/me", tokens["access_token"])
    assert status == 503, body
    assert body["error"]["code"] == "CALLER_UNVERIFIED"
