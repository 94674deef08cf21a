"""Auth service settings (``CODITECT_*``, like every process: the common, token and auth ones)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.settings import TokenSettings


class AuthSettings(TokenSettings):
    refresh_idle_ttl_seconds: int = 14 * 24 * 3600
    refresh_absolute_ttl_seconds: int = 30 * 24 * 3600
    signing_key_rotation_days: float = 30.0
    # OWASP Password Storage Cheat Sheet, Argon2id minimum: m=19 MiB, t=2, p=1.
    argon2_memory_kib: int = 19_456
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    hash_workers: int = Field(default=0, description="Threads hashing passwords; 0 means one per CPU.")
    hash_queue_limit: int = Field(default=64, description="Hashes waiting beyond this are refused with 429.")
    handler_concurrency: int = Field(default=32, description="Messages each auth subject handles at once.")
    lockout_threshold: int = 10
    lockout_base_seconds: float = 60.0
    lockout_max_seconds: float = 3600.0
    ip_failure_limit: int = 100
    ip_failure_window_seconds: float = 900.0
    lockout_failure_reset_seconds: float = Field(
        default=12 * 3600.0, description="Consecutive failures older than this are forgotten (Keycloak: 12 h)."
    )
    lockout_history_reset_seconds: float = Field(
        default=24 * 3600.0, description="After this long without failures, the next lock is short again."
    )
    attempt_lease_seconds: float = Field(
        default=60.0, description="A login attempt that never settles stops counting after this long."
    )
    hash_login_reserve: int = Field(
        default=16, description="Places of the hash pool that sign-ups and password changes may not take."
    )
    device_token_ttl_days: float = Field(
        default=90.0,
        description="A device token (handed out at login) exempts its holder's next logins to that account from the "
        "per-address throttle for this long.",
    )
    tenant_deletion_batch_users: int = Field(
        default=100, ge=1, description="Users a tenant deletion removes per store transaction (and names per event)."
    )
    register_address_limit: int = Field(default=20, description="Sign-ups per address per window.")
    register_address_window_seconds: float = 3600.0
    register_global_limit: int = Field(default=600, description="Sign-ups per minute per auth replica.")
    # Signing keys at rest and rotation.
    signing_key_encryption_key_file: Path | None = Field(
        default=None,
        description="The key-encryption key (32 bytes, base64) sealing signing keys in the store; unset, one is "
        "generated into <data_dir>/secrets/auth-kek on first start (embedded store only).",
    )
    signing_key_rotation_min_interval_seconds: float = Field(
        default=3600.0, description="A requested rotation this soon after the newest key is refused (429)."
    )
