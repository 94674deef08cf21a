"""File-event contract: what a workspace monitor publishes on the file-event stream and an IDE client
posts to ``POST /files/events``. Shared by the provisioning service's monitor and the file-event service.

A monitor publishes each ``FileChange`` as JSON on ``contracts.subjects.file_subject(tenant, user,
workspace)`` with ``Nats-Msg-Id = event_id``. Whose change it is comes from that subject (the monitor's
NATS identity may publish on its own workspace's subject only), never from the body.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final
from uuid import UUID, uuid4

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, model_validator

from contracts.file_rules import (
    ACTOR_MAX,
    PATH_MAX_BYTES,
    SHA256_PATTERN,
    Kind,
    as_utc,
    check_moved_names_its_origin,
    workspace_relative,
)
from contracts.file_rules import KINDS as KINDS  # re-exported: the contract's names stay importable here
from contracts.identity import BusRequest
from contracts.subjects import dead_letter_subject, rpc

SERVICE: Final = "file_event"

BATCH_MAX: Final = 1000

# Event type of the live and audit feed (published on ``evt.file.changed``).
FILE_CHANGED: Final = "file.changed"


WorkspaceRelativePath = Annotated[
    str,
    AfterValidator(workspace_relative),
    Field(
        description="Workspace-relative POSIX path; absolute paths, '..' segments, NUL bytes and paths over "
        "4096 bytes are refused.",
        examples=["src/app/main.py"],
    ),
]


class Attribution(BaseModel):
    """What the monitor could tell about the AI tool that made a change."""

    ai_tool: Annotated[str, StringConstraints(max_length=ACTOR_MAX)] | None = None
    ai_type: Annotated[str, StringConstraints(max_length=ACTOR_MAX)] | None = None
    confidence: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


class FileChange(BaseModel):
    """One change to one path of a workspace."""

    event_id: UUID = Field(default_factory=uuid4, description="Idempotency key: a duplicate is stored once.")
    session_id: UUID | None = Field(default=None, description="The workspace session it happened in, if known.")
    path: WorkspaceRelativePath
    kind: Kind
    old_path: WorkspaceRelativePath | None = Field(default=None, description="Required for moved.")
    is_dir: bool = False
    size: Annotated[int, Field(ge=0)] | None = None
    sha256: Annotated[str, StringConstraints(pattern=SHA256_PATTERN)] | None = None
    actor: Annotated[str, StringConstraints(min_length=1, max_length=ACTOR_MAX)] = Field(
        default="user", description="user, or the name of the AI agent or tool that made the change."
    )
    attribution: Attribution | None = None
    occurred_at: Annotated[datetime, AfterValidator(as_utc)] = Field(
        default_factory=lambda: datetime.now(UTC), description="When it happened; without a zone, UTC."
    )

    @model_validator(mode="after")
    def _moved_names_its_origin(self) -> FileChange:
        check_moved_names_its_origin(self.kind, self.old_path)
        return self


CHANGED_SAMPLE_MAX: Final = 100


class ChangedPath(BaseModel):
    path: str
    kind: Kind
    old_path: str | None = None
    actor: str = "user"


class FileChangedData(BaseModel):
    """``data`` of ``file.changed``: one event per workspace per committed ingest batch, not per file, so a
    10,000-file burst is a handful of live pushes and audit records. ``changes`` samples the batch (at most
    ``CHANGED_SAMPLE_MAX``, in order); ``count`` says how many were committed; ``actors`` lists who made them."""

    user_id: UUID
    workspace_id: UUID
    count: int
    actors: list[str]
    changes: list[ChangedPath]
    truncated: bool = False
    first_occurred_at: datetime
    last_occurred_at: datetime


# ---- The file-event service's bus API (requests from the gateway, replies) ----

INGEST: Final = rpc(SERVICE, "ingest")
LIST_EVENTS: Final = rpc(SERVICE, "list_events")
LIST_FILES: Final = rpc(SERVICE, "list_files")
HISTORY: Final = rpc(SERVICE, "history")

# Where a bus message the service can never store goes (not JSON, not a ``FileChange``, a subject that
# names no workspace), and one that kept failing for ``max_deliver`` deliveries: on the dead-letter
# stream (``contracts.subjects.DEAD_LETTER_STREAM``), body as received, headers saying why.
DEAD_LETTER_SUBJECT: Final = dead_letter_subject(SERVICE)
DEAD_LETTER_REASON_HEADER: Final = "Coditect-Dead-Letter-Reason"
DEAD_LETTER_SUBJECT_HEADER: Final = "Coditect-Original-Subject"
DEAD_LETTER_SEQUENCE_HEADER: Final = "Coditect-Stream-Sequence"

LIST_LIMIT_DEFAULT: Final = 100
LIST_LIMIT_MAX: Final = 500
CURSOR_MAX: Final = 512

Cursor = Annotated[str, StringConstraints(max_length=CURSOR_MAX)]
Limit = Annotated[int, Field(ge=1, le=LIST_LIMIT_MAX)]
PathPrefix = Annotated[
    str,
    StringConstraints(max_length=PATH_MAX_BYTES, pattern=r"^[^\x00]*$"),
    Field(description="A plain string prefix of workspace-relative paths ('src/' for the src folder)."),
]


class IngestFileEvents(BusRequest):
    """Store file changes of the caller's own workspace (IDE clients). Every event is validated; one bad
    event makes the whole request 422, naming each bad one by index and field, and nothing is taken."""

    events: Annotated[list[FileChange], Field(min_length=1, max_length=BATCH_MAX)]


class Accepted(BaseModel):
    accepted: int = Field(description="Distinct events taken (on the stream); a duplicate event_id counts once.")


class ListFileEvents(BusRequest):
    session_id: UUID | None = None
    path_prefix: PathPrefix | None = None
    kind: Kind | None = None
    actor: Annotated[str, StringConstraints(min_length=1, max_length=ACTOR_MAX)] | None = None
    since: datetime | None = Field(default=None, description="Events that occurred at or after this time.")
    until: datetime | None = Field(default=None, description="Events that occurred before this time.")
    limit: Limit = LIST_LIMIT_DEFAULT
    cursor: Cursor | None = None


class StoredFileChange(FileChange):
    """A change as stored: what was received, and when the service committed it."""

    recorded_at: datetime


class FileEventPage(BaseModel):
    items: list[StoredFileChange]
    next_cursor: str | None = Field(
        description="Present while more may follow; a page can be short when a filter matched little of what "
        "was scanned."
    )


class ListFiles(BusRequest):
    prefix: PathPrefix | None = None
    limit: Limit = LIST_LIMIT_DEFAULT
    cursor: Cursor | None = None


class FileInfo(BaseModel):
    """The current metadata of one path of the workspace (deleted ones are listed with ``deleted``)."""

    path: str
    is_dir: bool = False
    size: int | None = None
    sha256: str | None = None
    modified_at: datetime
    last_actor: str
    versions: int = Field(description="How many changes were recorded for this path (a move carries them).")
    deleted: bool = False


class FilePage(BaseModel):
    items: list[FileInfo]
    next_cursor: str | None


class FileHistory(BusRequest):
    path: WorkspaceRelativePath
    limit: Limit = LIST_LIMIT_DEFAULT
    cursor: Cursor | None = None
