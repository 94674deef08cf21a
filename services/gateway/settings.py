"""Gateway settings (``CODITECT_GATEWAY_*`` plus the common and token ones)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import TokenSettings


class GatewaySettings(TokenSettings):
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    max_body_bytes: int = 1_048_576
    jwks_refresh_min_interval: float = Field(default=5.0, description="At most one JWKS fetch this often.")
    jwks_refresh_interval: float = Field(
        default=60.0, description="The key set is fetched again this often, so retired keys stop being trusted."
    )
    revocation_poll_interval: float = Field(
        default=0.5, description="How often the gateway confirms it holds every revocation of the stream."
    )
    revocation_stale_after: float = Field(
        default=3.0,
        description="Tokens are refused (503) and /ready is 503 when revocations were last confirmed longer ago.",
    )
    # Edge trust.
    gateway_trust_client_trace: bool = Field(
        default=False,
        description="Continue the caller's trace (traceparent, tracestate) instead of starting a new one. "
        "Only behind a proxy that sets or strips those headers: a client would otherwise pick the trace ids "
        "of bus messages and events. Baggage is never taken from a caller.",
    )
