"""Domain errors raised by service code and turned into the reply envelope by the bus wrapper."""

from __future__ import annotations

from typing import Any

from contracts.envelope import ErrorCode, Reply
from contracts.identity import BusRequest, Caller


class ServiceError(Exception):
    def __init__(self, code: ErrorCode, message: str, details: Any = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after

    def to_reply(self) -> Reply:
        return Reply.failure(self.code, self.message, self.details, self.retry_after)


def not_found(what: str) -> ServiceError:
    return ServiceError(ErrorCode.NOT_FOUND, f"{what} not found")


def forbidden(message: str = "not allowed") -> ServiceError:
    return ServiceError(ErrorCode.FORBIDDEN, message)


def caller_of(message: BusRequest) -> Caller:
    """The verified caller of a request that needs one (the gateway sets it from the access token)."""
    if message.caller is None:
        raise ServiceError(ErrorCode.UNAUTHORIZED, "this operation needs an authenticated caller")
    return message.caller
