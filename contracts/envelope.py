"""The reply envelope every request/reply handler returns, and the stable error codes."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class ErrorCode(StrEnum):
    """Stable error codes. Published codes never change; add new ones at the end."""

    VALIDATION_FAILED = "VALIDATION_FAILED"
    MALFORMED_JSON = "MALFORMED_JSON"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNAUTHORIZED = "UNAUTHORIZED"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_REVOKED = "TOKEN_REVOKED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    REFRESH_TOKEN_INVALID = "REFRESH_TOKEN_INVALID"
    REFRESH_TOKEN_REUSED = "REFRESH_TOKEN_REUSED"
    FORBIDDEN = "FORBIDDEN"
    CONFLICT = "CONFLICT"
    EMAIL_TAKEN = "EMAIL_TAKEN"
    PRECONDITION_FAILED = "PRECONDITION_FAILED"
    ACCOUNT_LOCKED = "ACCOUNT_LOCKED"
    RATE_LIMITED = "RATE_LIMITED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    TIMEOUT = "TIMEOUT"
    INTERNAL = "INTERNAL"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    SESSION_TERMINATED = "SESSION_TERMINATED"
    SESSION_QUOTA_EXCEEDED = "SESSION_QUOTA_EXCEEDED"
    CANNOT_REMOVE_SELF = "CANNOT_REMOVE_SELF"
    CALLER_UNVERIFIED = "CALLER_UNVERIFIED"


class ErrorBody(BaseModel):
    code: ErrorCode
    message: str
    details: Any = None
    retry_after: int | None = Field(default=None, description="Seconds the caller should wait (lockout, rate limit).")


class Reply(BaseModel):
    """One reply shape for every request: a result, or an error with a stable code."""

    ok: bool
    result: Any = None
    error: ErrorBody | None = None

    @classmethod
    def success(cls, result: Any) -> Reply:
        return cls(ok=True, result=result)

    @classmethod
    def failure(cls, code: ErrorCode, message: str, details: Any = None, retry_after: int | None = None) -> Reply:
        return cls(ok=False, error=ErrorBody(code=code, message=message, details=details, retry_after=retry_after))
