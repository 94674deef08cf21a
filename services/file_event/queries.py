"""The read side: a caller's own workspace only (its id is derived from the verified caller), with
opaque cursors that name a position inside that workspace and nothing else."""

from __future__ import annotations

from uuid import UUID

import fdb.tuple

from contracts import file_event as api
from contracts.envelope import ErrorCode
from contracts.identity import BusRequest
from contracts.provisioning import workspace_id
from services.file_event import repository as repo
from services.file_event.context import FilesContext
from shared.cursors import decode_cursor, encode_cursor
from shared.errors import ServiceError, caller_of

_BAD_CURSOR = ServiceError(
    ErrorCode.VALIDATION_FAILED,
    "the cursor is not valid",
    [{"field": "cursor", "message": "not a cursor this list returned"}],
)


def _workspace(message: BusRequest) -> UUID:
    caller = caller_of(message)
    return workspace_id(caller.tenant_id, caller.user_id)


def _cursor(kind: bytes, position: tuple[object, ...] | None) -> str | None:
    return None if position is None else encode_cursor(kind + fdb.tuple.pack(position))


def _position(kind: bytes, cursor: str | None) -> tuple[object, ...] | None:
    if cursor is None:
        return None
    raw = decode_cursor(cursor, kind)
    try:
        return tuple(fdb.tuple.unpack(raw[len(kind) :]))
    except Exception as error:
        raise _BAD_CURSOR from error


def _time_position(kind: bytes, cursor: str | None) -> tuple[int, UUID] | None:
    position = _position(kind, cursor)
    if position is None:
        return None
    if len(position) != 2 or not isinstance(position[0], int) or not isinstance(position[1], UUID):
        raise _BAD_CURSOR
    return position[0], position[1]


async def list_events(ctx: FilesContext, message: api.ListFileEvents) -> api.FileEventPage:
    """The caller's file events, oldest first, filtered by time, session, path prefix, kind and actor."""
    ws = _workspace(message)
    after = _time_position(b"e", message.cursor)

    def keep(change: api.StoredFileChange) -> bool:
        return (
            (message.session_id is None or change.session_id == message.session_id)
            and (message.kind is None or change.kind == message.kind)
            and (message.actor is None or change.actor == message.actor)
            and (
                not message.path_prefix
                or change.path.startswith(message.path_prefix)
                or (change.old_path is not None and change.old_path.startswith(message.path_prefix))
            )
        )

    items, position = await ctx.store.run(
        lambda tx: repo.events_page(
            tx,
            ws,
            begin_us=None if message.since is None else repo.micros(message.since),
            end_us=None if message.until is None else repo.micros(message.until),
            after=after,
            keep=keep,
            limit=message.limit,
            max_scan=ctx.settings.query_max_scan,
        )
    )
    return api.FileEventPage(items=items, next_cursor=_cursor(b"e", position))


async def list_files(ctx: FilesContext, message: api.ListFiles) -> api.FilePage:
    """The caller's current files under a prefix, in path order (deleted ones flagged)."""
    ws = _workspace(message)
    position = _position(b"f", message.cursor)
    if position is not None and (len(position) != 1 or not isinstance(position[0], str)):
        raise _BAD_CURSOR
    after = None if position is None else str(position[0])
    items, last = await ctx.store.run(
        lambda tx: repo.files_page(tx, ws, message.prefix, after=after, limit=message.limit)
    )
    return api.FilePage(items=items, next_cursor=_cursor(b"f", None if last is None else (last,)))


async def history(ctx: FilesContext, message: api.FileHistory) -> api.FileEventPage:
    """One path's events, oldest first (a move appears in the history of both its paths)."""
    ws = _workspace(message)
    after = _time_position(b"h", message.cursor)
    items, position = await ctx.store.run(
        lambda tx: repo.history_page(tx, ws, message.path, after=after, limit=message.limit)
    )
    return api.FileEventPage(items=items, next_cursor=_cursor(b"h", position))
