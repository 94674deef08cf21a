"""The auth service's signing keys as a running service handles them: start-up with the KEK, rotation
as an operator action."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts import auth as api
from contracts.identity import Caller
from services.auth import repository as repo
from services.auth.app import build, key_encryption_key
from services.auth.keyring import KeyRing
from services.auth.settings import AuthSettings
from services.gateway.app import all_routes
from shared.service import build_context, serve
from shared.store.embedded import EmbeddedStore
from tests.auth.helpers import PASSWORD, get, post, registered_and_logged_in, unique_email
from tests.conftest import service_env
from tests.support import Gateway, NatsServer

MIN_INTERVAL_SECONDS = 1


def _operator(system: Gateway) -> NatsServer:
    """Rotation is operator-only on the bus: the gateway may not even send it."""
    assert system.nats is not None
    return system.nats


@pytest.fixture
def auth_overrides() -> dict[str, Any]:
    return {"signing_key_rotation_min_interval_seconds": MIN_INTERVAL_SECONDS}


async def rotate(system: Gateway, roles: list[str] | None) -> Any:
    caller = (
        None
        if roles is None
        else Caller(tenant_id=uuid.uuid4(), user_id=uuid.uuid4(), roles=roles, session_id=uuid.uuid4())
    )
    return await _operator(system).operator_request(api.ROTATE_SIGNING_KEY, api.RotateSigningKey(caller=caller))


async def published_kids(system: Gateway) -> set[str]:
    async with system.session.get(f"{system.api}/auth/jwks") as response:
        return {key["kid"] for key in (await response.json())["keys"]}


def kek_file(path: Path) -> Path:
    path.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
    return path


async def test_a_wrong_kek_stops_the_service_at_start_with_one_clear_line(
    nats: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    right = AuthSettings(
        **service_env(nats.url, tmp_path / "data"), signing_key_encryption_key_file=kek_file(tmp_path / "right")
    )
    store = EmbeddedStore(right.embedded_store_path("auth"))
    ring = KeyRing(
        store,
        kek=key_encryption_key(right),
        rotation_age=timedelta(days=30),
        published_after_retire=timedelta(minutes=5),
        rotation_min_interval=timedelta(hours=1),
    )
    kid = (await ring.active()).kid

    wrong = right.model_copy(update={"signing_key_encryption_key_file": kek_file(tmp_path / "wrong")})
    caplog.set_level(logging.INFO)
    # The service stops by itself: serve returns without anyone setting its stop event.
    await asyncio.wait_for(serve(build_context("auth", wrong), build(wrong), asyncio.Event()), 20)

    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.CRITICAL]
    assert len(lines) == 1 and "cannot open its signing keys" in lines[0] and "wrong key" in lines[0]
    assert [key.kid for key in await store.run(repo.signing_keys)] == [kid]
    store.close()


async def test_a_tenant_admin_cannot_rotate_the_signing_key(system: Gateway) -> None:
    registered, _ = await registered_and_logged_in(system)
    assert registered["user"]["roles"] == ["admin"]
    await asyncio.sleep(MIN_INTERVAL_SECONDS + 0.1)
    for roles in (["admin"], ["member"], registered["user"]["roles"]):
        reply = await rotate(system, roles)
        assert reply.error is not None and reply.error.code == "FORBIDDEN", reply
    reply = await rotate(system, None)
    assert reply.error is not None and reply.error.code == "UNAUTHORIZED"


async def test_an_operator_rotates_at_most_once_per_interval(system: Gateway) -> None:
    before = await published_kids(system)
    # The first key was made at start-up, and counts: wait the interval out.
    await asyncio.sleep(MIN_INTERVAL_SECONDS + 0.1)
    reply = await rotate(system, ["operator"])
    assert reply.ok, reply
    new_kid = reply.result["kid"]
    assert new_kid not in before
    assert await published_kids(system) == {*before, new_kid}
    again = await rotate(system, ["operator"])
    assert again.error is not None and again.error.code == "RATE_LIMITED"
    assert again.error.retry_after is not None and 1 <= again.error.retry_after <= MIN_INTERVAL_SECONDS


async def test_no_http_request_gets_the_operator_role_or_rotates_keys(system: Gateway) -> None:
    assert not [route.path for route in all_routes() if "rotat" in route.path or "signing" in route.path]
    status, body, _ = await post(
        system, "/auth/register", {"email": unique_email(), "password": PASSWORD, "roles": ["operator"]}
    )
    assert status == 201 and body["data"]["user"]["roles"] == ["admin"]
    _, admin = await registered_and_logged_in(system)
    status, body, _ = await post(
        system,
        "/tenants/me/users",
        {"email": unique_email(), "password": PASSWORD, "role": "operator"},
        admin["access_token"],
    )
    assert status == 422 and body["error"]["code"] == "VALIDATION_FAILED"
    status, me = await get(system, "/auth/whoami", admin["access_token"])
    assert status == 200 and "operator" not in me["data"]["roles"]
