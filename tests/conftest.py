"""Shared fixtures: a real nats-server per test module, the embedded store in a temp folder,
and the whole system (every service plus the gateway) started in-process against them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    Gateway,
    NatsServer,
    free_port,
    nats_server,
    running_gateway,
    start_service,
    wait_ready,
    with_identity,
)


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    with nats_server(tmp_path) as server:
        yield server


def service_env(nats_url: str, data_dir: Path, **extra: Any) -> dict[str, Any]:
    return {"nats_url": nats_url, "data_dir": data_dir, "log_level": "WARNING", **extra}


@pytest.fixture
def auth_overrides() -> dict[str, Any]:
    """Settings a test module may override for the auth service (e.g. lockout thresholds)."""
    return {}


@pytest.fixture
def session_overrides() -> dict[str, Any]:
    """Settings a test module may override for the session service (e.g. the quota, the idle time)."""
    return {}


@pytest.fixture
def session_in_process() -> bool:
    """Whether ``system`` runs the session service in this process (a test may run it as a child instead)."""
    return True


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    """Settings a test module may override for the gateway (e.g. trusting the client's trace context)."""
    return {}


# ---- file_event (issue 10): the file-event service in the system fixture ----
@pytest.fixture
def file_event_overrides() -> dict[str, Any]:
    """Settings a test module may override for the file-event service (batch sizes, max_deliver)."""
    return {}


@pytest.fixture
def file_event_in_process() -> bool:
    """Whether ``system`` runs the file-event service in this process (a test may run it as a child)."""
    return True


async def start_file_event(env: dict[str, Any], overrides: dict[str, Any]) -> Any:
    from services.file_event.app import build
    from services.file_event.settings import FileEventSettings

    settings = FileEventSettings(**env, **overrides)
    return await start_service("file_event", settings, build(settings))


# ---- end file_event ----


@pytest.fixture
async def system(
    nats: NatsServer,
    tmp_path: Path,
    auth_overrides: dict[str, Any],
    session_overrides: dict[str, Any],
    session_in_process: bool,
    gateway_overrides: dict[str, Any],
    provisioning_in_process: bool,
    provisioning_overrides: dict[str, Any],
    audit_overrides: dict[str, Any],
    file_event_overrides: dict[str, Any],
    file_event_in_process: bool,
) -> AsyncIterator[Gateway]:
    """Every service and the gateway, in this process, on a real NATS and the real embedded store."""
    from contracts.subjects import SERVICES
    from services.auth.app import build as build_auth
    from services.auth.settings import AuthSettings
    from services.gateway.settings import GatewaySettings
    from services.session.app import build as build_session
    from services.session.settings import SessionSettings
    from shared.settings import CommonSettings

    env = service_env(nats.url, tmp_path / "data")
    running = []
    # Every test registers from 127.0.0.1: lift the per-address sign-up limit (its own test lowers it).
    auth_settings = AuthSettings(**env, **{"register_address_limit": 100_000, **auth_overrides})
    running.append(await start_service("auth", auth_settings, build_auth(auth_settings)))
    if session_in_process:
        session_settings = SessionSettings(**env, **session_overrides)
        running.append(await start_service("session", session_settings, build_session(session_settings)))
    if file_event_in_process:
        running.append(await start_file_event(env, file_event_overrides))
    for name in SERVICES:
        if name == "provisioning" and provisioning_in_process:
            running.append(await start_provisioning(env, provisioning_overrides))
        elif name == "audit":
            running.append(await start_audit(env, audit_overrides))
        elif name not in ("auth", "session", "file_event"):
            running.append(await start_service(name, CommonSettings(**env), lambda ctx: None))
    settings = GatewaySettings(**env, **gateway_overrides, gateway_port=free_port())
    try:
        async with running_gateway(settings) as gateway:
            gateway.services = {r.ctx.name: r for r in running}
            gateway.nats = nats
            # Tests begin once /ready is 200 (a test running session as its own child starts it later).
            if session_in_process and file_event_in_process:
                await wait_ready(gateway)
            yield gateway
    finally:
        await asyncio.gather(*(r.shutdown() for r in running), return_exceptions=True)


# --- audit service (issue 11) ---------------------------------------------------------------------


@pytest.fixture
def audit_overrides() -> dict[str, Any]:
    """Settings a test module may override for the audit service (e.g. the checkpoint cadence)."""
    return {}


async def start_audit(env: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """The audit service in this process (its consumer, checkpoints and queries)."""
    from services.audit.app import build as build_audit
    from services.audit.settings import AuditSettings

    settings = AuditSettings(**env, **overrides)
    return await start_service("audit", settings, build_audit(settings))


# --- end audit service ----------------------------------------------------------------------------
# --- provisioning (issue 9): the real provisioning service in ``system``, for tests that ask ---------------
# A module sets ``provisioning_in_process`` to True; fast timings keep the tests short.
@pytest.fixture
def provisioning_in_process() -> bool:
    return False


@pytest.fixture
def provisioning_overrides() -> dict[str, Any]:
    return {}


PROVISIONING_TEST_TIMINGS: dict[str, Any] = {
    "provisioning_reconcile_interval_seconds": 0.3,
    "provisioning_retry_base_seconds": 0.1,
    "provisioning_retry_max_seconds": 0.5,
    "provisioning_lease_seconds": 20.0,
    "monitor_restart_backoff_max_seconds": 0.5,
}


async def start_provisioning(env: dict[str, Any], overrides: dict[str, Any]) -> Any:
    from services.provisioning.app import build
    from services.provisioning.settings import ProvisioningSettings

    # Its own identity before build: on a secured server it issues and admits workspace monitors' keys.
    settings = with_identity(ProvisioningSettings(**env, **{**PROVISIONING_TEST_TIMINGS, **overrides}), "provisioning")
    return await start_service("provisioning", settings, build(settings))


# --- end of provisioning -------------------------------------------------------------------------------------
