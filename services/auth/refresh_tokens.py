"""Refresh tokens: opaque 256-bit random strings, stored only as SHA-256 hashes.

A hash lookup is enough (no Argon2): the token has 256 bits of entropy, and looking it up by
its hash leaks nothing about the stored value through timing.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_BYTES = 32


def new_refresh_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
