"""The rules of the file-event contract that need no pydantic: path normalisation, limits, kinds.

``contracts.file_event`` builds its models on them, and a workspace monitor, which writes its events
without pydantic (``services.monitor.encode``), applies the very same functions, so the two cannot
disagree on what a valid path is."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final, Literal

PATH_MAX_BYTES: Final = 4096
ACTOR_MAX: Final = 200

Kind = Literal["created", "modified", "deleted", "moved"]
KINDS: Final[tuple[Kind, ...]] = ("created", "modified", "deleted", "moved")
SHA256_PATTERN: Final = r"^[0-9a-f]{64}$"


# What a path in normal form never contains: an empty segment ("//", a leading or trailing "/"), a "." or
# ".." segment, a NUL byte.
_NOT_NORMAL = re.compile(r"//|^/|/$|(?:^|/)\.\.?(?:/|$)|\x00")


def workspace_relative(value: str) -> str:
    """A workspace-relative POSIX path, normalised: no empty or "." segments, no trailing slash."""
    # A path already in normal form is returned as it is, after one regex search: every event of the
    # ingest passes here (the split and join below were 8 % of the file-event ingest's validation).
    # ASCII only: its length is its size in bytes, and it holds no surrogate that UTF-8 cannot encode.
    if value and value.isascii() and len(value) <= PATH_MAX_BYTES and _NOT_NORMAL.search(value) is None:
        return value
    return _normalised(value)


def _normalised(value: str) -> str:
    if len(value.encode()) > PATH_MAX_BYTES:
        raise ValueError(f"the path is longer than {PATH_MAX_BYTES} bytes")
    if "\x00" in value:
        raise ValueError("the path contains a NUL byte")
    if value.startswith("/"):
        raise ValueError("the path must be relative to the workspace, not absolute")
    segments = [segment for segment in value.split("/") if segment not in ("", ".")]
    if ".." in segments:
        raise ValueError("the path must not contain '..' segments")
    if not segments:
        raise ValueError("the path names no file or folder")
    return "/".join(segments)


def as_utc(value: datetime) -> datetime:
    """A time without a zone is taken as UTC, so every stored time compares with every other."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def check_moved_names_its_origin(kind: str, old_path: str | None) -> None:
    if kind == "moved" and old_path is None:
        raise ValueError("a moved event needs old_path")
    if kind != "moved" and old_path is not None:
        raise ValueError("old_path belongs to moved events only")
