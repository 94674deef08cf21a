"""The real client address through the whole system: devices record it and the per-address login
throttle counts it, from X-Forwarded-For only when the peer is a trusted proxy."""

from __future__ import annotations

from typing import Any

import pytest

from tests.auth.helpers import PASSWORD, get, login, post, register, unique_email
from tests.support import Gateway

CHEAP_HASHES = {"argon2_memory_kib": 1024, "argon2_time_cost": 1, "ip_failure_limit": 3}


@pytest.fixture
def auth_overrides() -> dict[str, Any]:
    return CHEAP_HASHES


async def _device_ip(system: Gateway, email: str, headers: dict[str, str]) -> str:
    status, body, _ = await post(system, "/auth/login", {"email": email, "password": PASSWORD}, headers=headers)
    assert status == 200, body
    status, devices = await get(system, "/auth/devices", token=body["data"]["access_token"])
    assert status == 200, devices
    current = [d for d in devices["data"]["items"] if d["current"]]
    return str(current[0]["ip"])


async def _fail(system: Gateway, headers: dict[str, str]) -> int:
    status, _, _ = await post(
        system, "/auth/login", {"email": unique_email("nobody"), "password": "a wrong guess"}, headers=headers
    )
    return status


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(system: Gateway) -> None:
    email = unique_email()
    await register(system, email)
    assert await _device_ip(system, email, {"X-Forwarded-For": "198.51.100.7"}) == "127.0.0.1"
    # Nor can a client dodge the throttle by naming a new address on every try.
    statuses = [await _fail(system, {"X-Forwarded-For": f"198.51.100.{i}"}) for i in range(4)]
    assert statuses == [401, 401, 401, 429], statuses


@pytest.mark.parametrize("gateway_overrides", [{"trusted_proxies": ["127.0.0.1/32"]}])
async def test_through_a_trusted_proxy_the_forwarded_address_is_the_client(
    system: Gateway, gateway_overrides: dict[str, Any]
) -> None:
    email = unique_email()
    await register(system, email)
    client_written = {"X-Forwarded-For": "203.0.113.1, 198.51.100.7"}  # the first part the client wrote itself
    assert await _device_ip(system, email, client_written) == "198.51.100.7"
    # One client behind the proxy reaching the limit does not throttle another one.
    crowd = {"X-Forwarded-For": "198.51.100.20"}
    assert [await _fail(system, crowd) for _ in range(4)] == [401, 401, 401, 429]
    other = {"X-Forwarded-For": "198.51.100.21"}
    assert await _fail(system, other) == 401
    await login(system, email)  # the proxy's own address (no header) is a client of its own


@pytest.mark.parametrize("gateway_overrides", [{"trusted_proxies": ["127.0.0.1/32"]}])
@pytest.mark.parametrize(
    "header",
    ["", "unknown", "garbage, ,,", "[::1", "999.999.1.1", "1.2.3.4:99999:1", "fe80::1%eth0", "\u00e9" * 50],
)
async def test_malformed_forwarded_headers_do_not_fail_the_request(
    system: Gateway, gateway_overrides: dict[str, Any], header: str
) -> None:
    email = unique_email()
    await register(system, email)
    assert await _device_ip(system, email, {"X-Forwarded-For": header}) == "127.0.0.1"
