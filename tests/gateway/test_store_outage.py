"""A service whose store cannot be opened stays up, says why, and /ready names it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from contracts.subjects import SERVICES
from services.gateway.settings import GatewaySettings
from shared.service import build_context, serve
from shared.settings import CommonSettings
from tests.support import NatsServer, free_port, running_gateway, start_service


async def test_a_service_without_its_store_is_named_by_ready(
    nats: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data folder should be")
    healthy = CommonSettings(nats_url=nats.url, data_dir=tmp_path / "data", log_level="WARNING")
    running = [await start_service(name, healthy, lambda ctx: None) for name in SERVICES if name != "audit"]
    broken = build_context("audit", CommonSettings(nats_url=nats.url, data_dir=blocker, log_level="WARNING"))
    stop = asyncio.Event()
    task = asyncio.create_task(serve(broken, lambda ctx: None, stop))
    try:
        settings = GatewaySettings(nats_url=nats.url, data_dir=tmp_path, gateway_port=free_port(), log_level="WARNING")
        async with running_gateway(settings) as gateway:
            body: dict[str, object] = {}
            for _ in range(100):
                async with gateway.session.get(f"{gateway.api}/ready") as response:
                    body = await response.json()
                if body.get("error", {}).get("details", {}).get("services", {}).get("audit") == "store unavailable":  # type: ignore[union-attr]
                    break
                await asyncio.sleep(0.05)
            assert response.status == 503
            assert body["error"]["details"]["down"] == ["audit"]  # type: ignore[index]
            assert "audit store unavailable" in body["error"]["message"]  # type: ignore[index]
        assert not task.done()
        assert any("audit cannot reach its store" in r.getMessage() for r in caplog.records)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await asyncio.gather(*(r.shutdown() for r in running))
