"""Gateway process: ``python -m services.gateway``."""

from __future__ import annotations

import logging

from aiohttp import web

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from shared.heap import freeze_startup_objects
from shared.telemetry import setup_logging


def main() -> None:
    settings = GatewaySettings()
    setup_logging("gateway", settings.log_level)
    logging.getLogger(__name__).info("gateway listening on http://%s:%d", settings.gateway_host, settings.gateway_port)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    app = create_app(settings)

    async def settled(app: web.Application) -> None:
        freeze_startup_objects()

    app.on_startup.append(settled)
    web.run_app(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        reuse_port=settings.gateway_reuse_port or None,
        print=None,
        access_log=None,
        shutdown_timeout=settings.graceful_timeout,
    )


if __name__ == "__main__":
    main()
