"""The gateway's composition root: settings, bus link, token verifier, routes wrapped by the edge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from services.gateway import live
from services.gateway.buslink import BusLink
from services.gateway.client_address import ClientAddress, parse_networks
from services.gateway.deps import BUS_KEY, CLIENT_ADDRESS_KEY, SETTINGS_KEY
from services.gateway.edge import NO_ROUTE, VERIFIER_KEY, edge_for
from services.gateway.openapi import OPENAPI_KEY, build_openapi
from services.gateway.routes import audit as audit_routes
from services.gateway.routes import auth as auth_routes
from services.gateway.routes import files as file_routes
from services.gateway.routes import ops
from services.gateway.routes import sessions as session_routes
from services.gateway.routes import workspaces as workspace_routes
from services.gateway.routing import Route
from services.gateway.settings import GatewaySettings
from services.gateway.tokens import JwksVerifier
from shared.bus import identity_from
from shared.buspolicy import GATEWAY
from shared.callerproof import CallerSigner
from shared.telemetry import setup_tracing

log = logging.getLogger(__name__)

BASE_PATH = "/api/v5"


def all_routes() -> list[Route]:
    return [
        *ops.ROUTES,
        *auth_routes.ROUTES,
        *session_routes.ROUTES,
        *workspace_routes.ROUTES,
        *file_routes.ROUTES,
        *audit_routes.ROUTES,
        *live.ROUTES,
    ]


def create_app(settings: GatewaySettings) -> web.Application:
    tracer_provider = setup_tracing("gateway", settings.otel_exporter_otlp_endpoint)
    bus = BusLink(
        settings.nats_url,
        timeout=settings.request_timeout,
        identity=identity_from(settings, GATEWAY),
        signer=CallerSigner.from_file(settings.caller_signing_key_file) if settings.caller_signing_key_file else None,
        tracer_provider=tracer_provider,
    )
    verifier = JwksVerifier(
        bus,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway=settings.jwt_leeway_seconds,
        access_ttl=settings.access_token_ttl_seconds,
        refresh_min_interval=settings.jwks_refresh_min_interval,
        refresh_interval=settings.jwks_refresh_interval,
        revocation_poll_interval=settings.revocation_poll_interval,
        revocation_stale_after=settings.revocation_stale_after,
    )
    # No middlewares: each route's handler is wrapped by the edge instead (see services/gateway/edge.py).
    app = web.Application(client_max_size=settings.max_body_bytes)
    routes = all_routes()
    app[SETTINGS_KEY] = settings
    app[BUS_KEY] = bus
    app[CLIENT_ADDRESS_KEY] = ClientAddress(parse_networks(settings.trusted_proxies), settings.trusted_proxy_header)
    app[VERIFIER_KEY] = verifier
    app[OPENAPI_KEY] = build_openapi(routes, BASE_PATH)
    edge = edge_for(settings, verifier)
    for route in routes:
        app.router.add_route(route.method, BASE_PATH + route.path, edge.wrap(route))
    app.router.add_route(NO_ROUTE.method, NO_ROUTE.path, edge.wrap(NO_ROUTE))  # last: it matches every path

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        bus.start()

        stop = asyncio.Event()

        async def follow() -> None:
            # The streams are the bootstrap identity's to create; until they exist the revocation
            # follower keeps retrying (and tokens are refused as not current).
            while not await bus.wait_connected(60):
                pass
            await verifier.run(stop)

        task = asyncio.create_task(follow())
        yield
        stop.set()
        try:
            await asyncio.wait_for(task, 5)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await bus.stop()

    app.cleanup_ctx.append(lifecycle)
    live.install(app, bus, verifier, settings)
    return app
