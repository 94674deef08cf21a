"""Files: HTTP routes that become file-event service requests. The caller's workspace is derived by
the service from the verified caller; nothing in a body or query can name another one."""

from __future__ import annotations

from aiohttp import web

from contracts import file_event
from services.gateway.deps import IDENTITY_FIELDS, send
from services.gateway.http import ok, read_json
from services.gateway.routing import Route, body_of

_EVENT_QUERY = ("session_id", "path_prefix", "kind", "actor", "since", "until", "limit", "cursor")
_FILES_QUERY = ("prefix", "limit", "cursor")
_HISTORY_QUERY = ("path", "limit", "cursor")


def _query(request: web.Request, names: tuple[str, ...]) -> dict[str, str]:
    return {name: request.query[name] for name in names if name in request.query}


async def post_events(request: web.Request) -> web.Response:
    body = await read_json(request)
    data = {key: value for key, value in body.items() if key not in IDENTITY_FIELDS}
    return ok(await send(request, file_event.INGEST, file_event.IngestFileEvents, data), status=202)


async def list_events(request: web.Request) -> web.Response:
    query = _query(request, _EVENT_QUERY)
    return ok(await send(request, file_event.LIST_EVENTS, file_event.ListFileEvents, query))


async def list_files(request: web.Request) -> web.Response:
    query = _query(request, _FILES_QUERY)
    return ok(await send(request, file_event.LIST_FILES, file_event.ListFiles, query))


async def file_history(request: web.Request) -> web.Response:
    query = _query(request, _HISTORY_QUERY)
    return ok(await send(request, file_event.HISTORY, file_event.FileHistory, query))


ROUTES = [
    Route(
        "POST",
        "/files/events",
        post_events,
        "Record file changes of the caller's workspace (at most 1000); a bad event makes the request 422, "
        "naming each bad one by index and field (events.<i>.<field>), and none is taken",
        body=body_of(file_event.IngestFileEvents),
        response=file_event.Accepted,
        status=202,
        tag="files",
    ),
    Route(
        "GET",
        "/files/events",
        list_events,
        "The caller's file events, oldest first (since inclusive, until exclusive)",
        response=file_event.FileEventPage,
        query=_EVENT_QUERY,
        tag="files",
    ),
    Route(
        "GET",
        "/files",
        list_files,
        "The caller's current files under a prefix, in path order; deleted ones are listed with deleted=true",
        response=file_event.FilePage,
        query=_FILES_QUERY,
        tag="files",
    ),
    Route(
        "GET",
        "/files/history",
        file_history,
        "The events of one path, oldest first (a move is in the history of both its paths)",
        response=file_event.FileEventPage,
        query=_HISTORY_QUERY,
        tag="files",
    ),
]
