"""The bootstrap identity: creates the JetStream streams before services start (``./dev up``, the
test harness, a Kubernetes Job or compose's one-shot service). No other identity may create streams.

    python -m shared.bootstrap     # with CODITECT_NATS_URL and CODITECT_NATS_SEED_FILE (bootstrap's)
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import nats

from shared import bus
from shared.buspolicy import BOOTSTRAP
from shared.settings import CommonSettings
from shared.telemetry import setup_logging

log = logging.getLogger(__name__)


async def bootstrap_streams(url: str, seed_file: Path | None, *, timeout: float = 30.0) -> None:
    """Create the streams that are missing, retrying until NATS answers (within ``timeout``)."""
    identity = bus.BusIdentity(BOOTSTRAP, seed_file)
    async with asyncio.timeout(timeout):
        await bus.wait_for_nats(url, BOOTSTRAP, identity=identity)
        connection = await nats.connect(url, connect_timeout=2, **identity.connect_options())
        try:
            await bus.create_streams(connection.jetstream())
        finally:
            await connection.close()
    log.info("the JetStream streams exist on %s", url)


def main() -> None:
    settings = CommonSettings()
    setup_logging(BOOTSTRAP, settings.log_level)
    asyncio.run(bootstrap_streams(settings.nats_url, settings.nats_seed_file))


if __name__ == "__main__":
    main()
