"""Gateway settings (``CODITECT_GATEWAY_*`` plus the common ones)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class GatewaySettings(CommonSettings):
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    max_body_bytes: int = 1_048_576
    jwt_issuer: str = "coditect-auth"
    jwt_audience: str = "coditect-api"
    jwt_leeway_seconds: int = 30
    jwks_refresh_min_interval: float = 5.0
    # Edge trust.
    gateway_trust_client_trace: bool = Field(
        default=False,
        description="Continue the caller's trace (traceparent, tracestate) instead of starting a new one. "
        "Only behind a proxy that sets or strips those headers: a client would otherwise pick the trace ids "
        "of bus messages and events. Baggage is never taken from a caller.",
    )
