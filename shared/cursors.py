"""Opaque list cursors: a store key (or a position) encoded for clients, checked on the way back."""

from __future__ import annotations

import base64
import binascii

from contracts.envelope import ErrorCode
from shared.errors import ServiceError

_CURSOR_DETAILS = [{"field": "cursor", "message": "not a cursor this list returned"}]


def decode_offset(cursor: str) -> int:
    raw = decode_cursor(cursor, b"offset:")
    try:
        return max(0, int(raw.removeprefix(b"offset:")))
    except ValueError as error:
        raise ServiceError(ErrorCode.VALIDATION_FAILED, "the cursor is not valid", _CURSOR_DETAILS) from error


def encode_cursor(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def decode_cursor(cursor: str, prefix: bytes) -> bytes:
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as error:
        raise ServiceError(ErrorCode.VALIDATION_FAILED, "the cursor is not valid", _CURSOR_DETAILS) from error
    if not key.startswith(prefix):
        raise ServiceError(ErrorCode.VALIDATION_FAILED, "the cursor is not valid", _CURSOR_DETAILS)
    return key
