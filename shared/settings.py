"""Settings from the environment: one prefix, ``CODITECT_``, for every process."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "CODITECT_"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
    nats_seed_file: Path | None = Field(
        default=None,
        description="This process's NATS nkey seed (a 0600 file; ./dev up creates one per identity under "
        "<data>/bus). Without it the process connects anonymously and says so once.",
    )
    caller_public_key: str | None = Field(
        default=None,
        description="Services: the caller-assertion public keys they trust (base64url Ed25519, comma-separated: "
        "the gateway's and the operator tools'). When set, a request's caller is believed only with a "
        "valid assertion by one of them.",
    )
    caller_signing_key_file: Path | None = Field(
        default=None,
        description="Gateway and operator tools: the Ed25519 key (0600 file) they sign caller assertions with.",
    )
    data_dir: Path = Path("data")
    fdb_cluster_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("FDB_CLUSTER_FILE", "CODITECT_FDB_CLUSTER_FILE"),
        description="When set, the store is FoundationDB through this cluster file; else the embedded store.",
    )
    store_sync: str = Field(
        default="normal",
        description="Embedded store durability: 'normal' survives a process crash, 'full' also a power loss.",
    )
    request_timeout: float = 5.0
    ready_timeout: float = 1.0
    log_level: str = "INFO"
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "CODITECT_OTLP_ENDPOINT")
    )
    graceful_timeout: float = 10.0

    store_deadline_seconds: float = Field(
        default=5.0, description="A transaction still not committed after this long fails fast (retryable)."
    )
    store_wal_limit_bytes: int = Field(default=64 * 1024 * 1024, description="The embedded store's WAL bound.")
    publish_after_commit_seconds: float = Field(
        default=0.5, description="How long a request waits to publish its events; the outbox loop sends the rest."
    )

    def embedded_store_path(self, service: str) -> Path:
        """One database file per service: the embedded analogue of owning a key prefix."""
        return self.data_dir / "store" / f"{service}.sqlite3"


class TokenSettings(CommonSettings):
    """Access-token rules the issuer (auth) and every verifier (gateway) must agree on: one source."""

    jwt_issuer: str = "coditect-auth"
    jwt_audience: str = "coditect-api"
    access_token_ttl_seconds: int = 300
    jwt_leeway_seconds: int = Field(default=30, description="Clock skew tolerated by the issuer and the verifiers.")
