"""A service told to stop while NATS is away still stops: its store closed, its tasks ended."""

from __future__ import annotations

import asyncio
from pathlib import Path

from shared.settings import CommonSettings
from tests.support import NatsServer, kill_nats, start_service


async def test_a_service_told_to_stop_while_the_bus_is_down_stops_and_closes_its_store(
    nats: NatsServer, tmp_path: Path
) -> None:
    settings = CommonSettings(nats_url=nats.url, data_dir=tmp_path / "data", log_level="WARNING")
    service = await start_service("session", settings, lambda ctx: None)
    closed: list[str] = []
    service.ctx.on_close.append(lambda: closed.append("closed"))
    kill_nats(nats)
    try:
        await asyncio.sleep(0.5)  # the service has noticed: its connection is reconnecting
        await service.shutdown()  # raises what the stop raised, or times out if it hangs
        assert closed == ["closed"], "the stop ran to its end"
        assert service.ctx.broker.config.connection_state.connection.is_closed, "nothing left reconnecting"
    finally:
        nats.start_again()
