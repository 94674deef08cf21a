"""A file event as the monitor sends it: ``contracts.file_event.FileChange``'s JSON, written without
pydantic. pydantic and the contract's models are about 12 MB of the monitor's resident memory (budget:
60 MB at 1,000 changes/s) and 0.7 s of its start-up (a workspace is ready once its monitor watches).

The contract stays authoritative: the checks are the contract's own functions (``contracts.file_rules``),
and tests/provisioning/test_monitor_encoding.py proves, for every kind and field, that these bytes are
the model's own serialization, validate back to the same event, and that whatever the model refuses is
refused here too (a field added to the model fails that test until it is written here)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final
from uuid import UUID, uuid4

import orjson

from contracts.file_rules import (
    ACTOR_MAX,
    KINDS,
    SHA256_PATTERN,
    as_utc,
    check_moved_names_its_origin,
    workspace_relative,
)

# FileChange's fields in its order (pydantic writes them so; the test compares the bytes).
FIELDS: Final = (
    "event_id",
    "session_id",
    "path",
    "kind",
    "old_path",
    "is_dir",
    "size",
    "sha256",
    "actor",
    "attribution",
    "occurred_at",
)
_SHA256: Final = re.compile(SHA256_PATTERN)


class InvalidChange(ValueError):
    """A change the contract would refuse (a name that is not UTF-8, a path over 4096 bytes, ...)."""


def encode_change(
    *,
    path: str,
    kind: str,
    old_path: str | None,
    is_dir: bool,
    size: int | None,
    sha256: str | None,
    actor: str,
    occurred_at: datetime,
    event_id: UUID | None = None,
) -> tuple[str, bytes]:
    """(event id, JSON body) of one change; InvalidChange for what the contract would refuse."""
    if kind not in KINDS:
        raise InvalidChange(f"unknown kind {kind!r}")
    try:  # the contract's own checks (contracts.file_rules)
        path = workspace_relative(path)
        if old_path is not None:
            old_path = workspace_relative(old_path)
        check_moved_names_its_origin(kind, old_path)
    except ValueError as error:
        raise InvalidChange(str(error)) from error
    if size is not None and size < 0:
        raise InvalidChange("size must not be negative")
    if sha256 is not None and not _SHA256.fullmatch(sha256):
        raise InvalidChange("sha256 must be 64 lowercase hex digits")
    if not 1 <= len(actor) <= ACTOR_MAX:
        raise InvalidChange(f"actor must be 1 to {ACTOR_MAX} characters")
    event = str(event_id or uuid4())
    body = {
        "event_id": event,
        "session_id": None,
        "path": path,
        "kind": kind,
        "old_path": old_path,
        "is_dir": is_dir,
        "size": size,
        "sha256": sha256,
        "actor": actor,
        "attribution": None,
        "occurred_at": as_utc(occurred_at),
    }
    return event, orjson.dumps(body, option=orjson.OPT_UTC_Z)
