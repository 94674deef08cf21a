"""Session service bus API: workspace sessions (not auth sessions, which are devices)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from contracts.file_rules import workspace_relative
from contracts.identity import BusRequest
from contracts.subjects import event, rpc

SERVICE: Final = "session"

CREATE: Final = rpc(SERVICE, "create")
LIST: Final = rpc(SERVICE, "list")
GET: Final = rpc(SERVICE, "get")
UPDATE: Final = rpc(SERVICE, "update")
DELETE: Final = rpc(SERVICE, "delete")
FORK: Final = rpc(SERVICE, "fork")
TOUCH: Final = rpc(SERVICE, "touch")

# Event types (published on ``evt.session.<name>``). Every one is a ``contracts.events.Event`` with
# ``tenant_id`` the session's tenant, ``target`` "session:<id>", ``actor`` the caller (or the system for
# the idle sweep and terminations) and ``data`` a ``SessionEventData``.
SESSION_CREATED: Final = "session.created"
SESSION_UPDATED: Final = "session.updated"
SESSION_FORKED: Final = "session.forked"
SESSION_DELETED: Final = "session.deleted"
EVENT_TYPES: Final = (SESSION_CREATED, SESSION_UPDATED, SESSION_FORKED, SESSION_DELETED)
EVENT_SUBJECTS: Final = tuple(event(*type_.split(".", 1)) for type_ in EVENT_TYPES)

NAME_MAX = 200
LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 500

Status = Literal["active", "suspended", "terminated"]
STATUSES: Final[tuple[Status, ...]] = ("active", "suspended", "terminated")


def _workspace_path(value: str) -> str:
    """A workspace-relative POSIX path, normalised as a file's (``contracts.file_rules``), and with no
    control character at all: it is shown in the IDE's session list."""
    if any(ord(char) < 0x20 or char == "\x7f" for char in value):
        raise ValueError("the path contains a NUL or another control character")
    return workspace_relative(value)


SessionName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX),
    Field(description="1 to 200 characters after surrounding whitespace is stripped.", examples=["refactor auth"]),
]
WorkspacePath = Annotated[
    str,
    AfterValidator(_workspace_path),
    Field(
        description="Relative POSIX path inside the user's workspace; absolute paths, '..' segments, control "
        "characters and paths over 4096 bytes are refused. Defaults to the session id.",
        examples=["projects/api"],
    ),
]
IfMatch = Annotated[
    list[Annotated[int, Field(ge=0)]] | None,
    Field(
        description="Versions the client's If-Match names (its ETags); the change applies only if the session's "
        "version is one of them (an empty list never matches). Absent: no precondition."
    ),
]


# Requests (commands are imperative).
class CreateSession(BusRequest):
    name: SessionName
    workspace_path: WorkspacePath | None = None


class ListSessions(BusRequest):
    status: Status | None = None
    limit: Annotated[int, Field(ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT
    cursor: Annotated[str, StringConstraints(max_length=512)] | None = None
    user_id: UUID | None = Field(
        default=None, description="Admins only: list a user of their own tenant. Others may name only themselves."
    )


class GetSession(BusRequest):
    session_id: UUID


class UpdateSession(BusRequest):
    session_id: UUID
    name: SessionName | None = None
    status: Status | None = None
    if_match: IfMatch = None


class DeleteSession(BusRequest):
    session_id: UUID
    if_match: IfMatch = None


class ForkSession(BusRequest):
    session_id: UUID
    name: SessionName | None = Field(default=None, description='Default: "<parent name> (fork)".')


class TouchSession(BusRequest):
    session_id: UUID


# Replies.
class Session(BaseModel):
    """A workspace session as clients see it."""

    id: UUID
    tenant_id: UUID
    user_id: UUID
    name: str
    workspace_path: str
    status: Status
    parent_session_id: UUID | None = None
    version: int = Field(description="Grows with every change of the session; its ETag is the quoted version.")
    created_at: datetime
    updated_at: datetime
    last_accessed_at: datetime


class SessionPage(BaseModel):
    items: list[Session]
    next_cursor: str | None


# Event data.
class SessionEventData(BaseModel):
    """``data`` of every session event: the owner and the session (for ``session.deleted``, its last state)."""

    user_id: UUID
    session: Session
