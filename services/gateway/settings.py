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
    # Live push.
    live_heartbeat_seconds: float = Field(
        default=30.0, description="WebSocket ping interval; a socket that misses the pong for half of it is dropped."
    )
    live_auth_timeout_seconds: float = Field(
        default=5.0, description="Time to send the auth message when no ?access_token= was given (then 4401)."
    )
    live_send_queue: int = Field(
        default=256, ge=1, description="Messages waiting for one socket; a client that falls this far behind is cut."
    )
    live_max_sockets_per_user: int = Field(
        default=16, ge=1, description="Open sockets per user on one gateway; the next one is closed with 4429."
    )
    live_max_client_message_bytes: int = Field(
        default=16_384, ge=1024, description="Largest message a client may send (its auth message); larger is 1009."
    )
