"""HTTP helpers for auth tests: register, log in, call with a token."""

from __future__ import annotations

import uuid
from typing import Any

import jwt

from tests.support import Gateway

PASSWORD = "correct horse battery"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@Example.com"


async def post(
    gateway: Gateway, path: str, body: Any = None, token: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    async with gateway.session.post(
        f"{gateway.api}{path}", json=body if body is not None else {}, headers=all_headers
    ) as response:
        payload = await response.json() if response.status != 204 else None
        return response.status, payload, dict(response.headers)


async def get(gateway: Gateway, path: str, token: str | None = None, **params: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with gateway.session.get(f"{gateway.api}{path}", headers=headers, params=params) as response:
        return response.status, await response.json()


async def register(
    gateway: Gateway, email: str | None = None, password: str = PASSWORD, **extra: Any
) -> dict[str, Any]:
    status, body, _ = await post(
        gateway, "/auth/register", {"email": email or unique_email(), "password": password, **extra}
    )
    assert status == 201, body
    return dict(body["data"])


async def login(gateway: Gateway, email: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
    status, body, _ = await post(gateway, "/auth/login", {"email": email, "password": password, **extra})
    assert status == 200, body
    return dict(body["data"])


async def registered_and_logged_in(gateway: Gateway, **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    email = unique_email()
    registered = await register(gateway, email, **extra)
    return registered, await login(gateway, email)


async def delete(gateway: Gateway, path: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with gateway.session.delete(f"{gateway.api}{path}", headers=headers) as response:
        return response.status, await response.json() if response.status != 204 else None


def claims_of(access_token: str) -> dict[str, Any]:
    """The claims of an access token, unverified (the test only reads its own token)."""
    return dict(jwt.decode(access_token, options={"verify_signature": False}))


async def add_member(gateway: Gateway, admin_token: str, role: str = "member") -> dict[str, Any]:
    """A new user of the admin's tenant, as the reply shows it; it logs in with its email and PASSWORD."""
    email = unique_email(role)
    status, body, _ = await post(
        gateway, "/tenants/me/users", {"email": email, "password": PASSWORD, "role": role}, token=admin_token
    )
    assert status == 201, body
    return dict(body["data"])


def retry_after(headers: dict[str, str]) -> int:
    """The Retry-After of a 423 or 429: whole seconds, at least one (API.md)."""
    value = headers.get("Retry-After", "")
    assert value.isdigit() and int(value) >= 1, headers
    return int(value)
