"""Gateway settings (``CODITECT_GATEWAY_*`` plus the common and token ones)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from services.gateway.client_address import parse_networks
from shared.settings import TokenSettings


class GatewaySettings(TokenSettings):
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    gateway_reuse_port: bool = Field(
        default=False,
        description="Listen with SO_REUSEPORT so that several gateway processes share one port (the kernel "
        "spreads connections among them). The local runner sets it when it runs more than one.",
    )
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
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CODITECT_TRUSTED_PROXIES: comma-separated CIDRs (or addresses) of the proxies in front of the "
        "gateway. Only a connection from one of them may name the client's address (in trusted_proxy_header); "
        "empty trusts nobody and the TCP peer is the client.",
        examples=["10.0.0.0/8,192.168.0.0/16"],
    )
    trusted_proxy_header: Literal["x-forwarded-for", "forwarded"] = Field(
        default="x-forwarded-for",
        description="The one header the trusted proxies append the client address to (X-Forwarded-For or RFC 7239 "
        "Forwarded); the other is never read, since a proxy passes it through as the client sent it.",
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
    live_max_unauthenticated_sockets: int = Field(
        default=256,
        ge=1,
        description="Sockets waiting for their auth message at once on one gateway; beyond it a new socket "
        "without ?access_token= is refused (503) before the upgrade.",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = json.loads(value) if value.lstrip().startswith("[") else value.split(",")
        if isinstance(value, list | tuple):
            return [str(network) for network in parse_networks(str(item) for item in value)]
        return value

    @field_validator("trusted_proxy_header", mode="before")
    @classmethod
    def _header_name(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value
