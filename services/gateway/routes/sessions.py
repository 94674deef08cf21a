"""Workspace sessions: HTTP routes that become session-service requests, with ETag and If-Match."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from contracts import session
from contracts.envelope import ErrorCode
from services.gateway.deps import send, send_for_json
from services.gateway.http import ApiError, no_content, ok, ok_json, read_json
from services.gateway.routing import Route, body_of, unknown_fields

_MAX_VERSION_DIGITS = 18

# The bodies are closed: a field a route does not take is a 422 naming it, not silently dropped (a
# misspelt "staus" would otherwise be a rename that did nothing). The identity fields and those the
# gateway takes from the path and headers are not body fields, so a body naming them is refused too.
_CREATE_BODY = body_of(session.CreateSession, closed=True)
_UPDATE_BODY = body_of(session.UpdateSession, without=("session_id", "if_match"), closed=True)
_FORK_BODY = body_of(session.ForkSession, without=("session_id",), closed=True)


def if_match_versions(header: str | None) -> list[int] | None:
    """The versions an If-Match header names (RFC 9110): None for no precondition or ``*``; weak or
    foreign tags never match a strong comparison, so a header of only those names no version (412)."""
    if header is None:
        return None
    tags = [tag.strip() for tag in header.split(",")]
    if "*" in tags:
        return None
    versions = []
    for tag in tags:
        inner = tag[1:-1] if len(tag) >= 2 and tag[0] == tag[-1] == '"' else ""
        if inner.isascii() and inner.isdigit() and len(inner) <= _MAX_VERSION_DIGITS:
            versions.append(int(inner))
    return versions


def _with_etag(result: bytes, status: int = 200) -> web.Response:
    """A session (its JSON as the service wrote it) with its version as a strong ETag."""
    return ok_json(result, status=status, headers={"ETag": f'"{orjson.loads(result)["version"]}"'})


async def _body(request: web.Request, model: type[BaseModel] | None) -> dict[str, Any]:
    """The JSON body, refused with 422 if it names a field ``model`` does not (None: takes no field)."""
    body = await read_json(request)
    unknown = unknown_fields(body, model)
    if unknown:
        details = [{"field": name, "message": "unknown field"} for name in unknown]
        raise ApiError.of(ErrorCode.VALIDATION_FAILED, "the body has fields this route does not take", details)
    return body


def _id(request: web.Request) -> dict[str, Any]:
    return {"session_id": request.match_info["id"]}


async def create_session(request: web.Request) -> web.Response:
    return _with_etag(
        await send_for_json(request, session.CREATE, session.CreateSession, await _body(request, _CREATE_BODY)),
        status=201,
    )


async def list_sessions(request: web.Request) -> web.Response:
    query = {key: request.query[key] for key in ("status", "limit", "cursor", "user_id") if key in request.query}
    return ok(await send(request, session.LIST, session.ListSessions, query))


async def get_session(request: web.Request) -> web.Response:
    return _with_etag(await send_for_json(request, session.GET, session.GetSession, _id(request)))


async def update_session(request: web.Request) -> web.Response:
    data = {
        **await _body(request, _UPDATE_BODY),
        **_id(request),
        "if_match": if_match_versions(request.headers.get("If-Match")),
    }
    return _with_etag(await send_for_json(request, session.UPDATE, session.UpdateSession, data))


async def delete_session(request: web.Request) -> web.Response:
    data = {**_id(request), "if_match": if_match_versions(request.headers.get("If-Match"))}
    await send(request, session.DELETE, session.DeleteSession, data)
    return no_content()


async def fork_session(request: web.Request) -> web.Response:
    data = {**await _body(request, _FORK_BODY), **_id(request)}
    return _with_etag(await send_for_json(request, session.FORK, session.ForkSession, data), status=201)


async def touch_session(request: web.Request) -> web.Response:
    await _body(request, None)
    return _with_etag(await send_for_json(request, session.TOUCH, session.TouchSession, _id(request)))


ROUTES = [
    Route(
        "POST",
        "/sessions",
        create_session,
        "Open a workspace session (counts toward the active-session quota)",
        body=_CREATE_BODY,
        response=session.Session,
        status=201,
        tag="sessions",
        response_headers=("ETag",),
    ),
    Route(
        "GET",
        "/sessions",
        list_sessions,
        "The caller's sessions (admins: ?user_id= of their tenant), most recently accessed first",
        response=session.SessionPage,
        query=("status", "limit", "cursor", "user_id"),
        tag="sessions",
    ),
    Route(
        "GET",
        "/sessions/{id}",
        get_session,
        "One session; its ETag is its version",
        response=session.Session,
        tag="sessions",
        response_headers=("ETag",),
    ),
    Route(
        "PATCH",
        "/sessions/{id}",
        update_session,
        "Rename or change status (active, suspended, terminated); a stale If-Match is 412",
        body=_UPDATE_BODY,
        response=session.Session,
        tag="sessions",
        headers=("If-Match",),
        response_headers=("ETag",),
    ),
    Route(
        "DELETE",
        "/sessions/{id}",
        delete_session,
        "Delete a session; a stale If-Match is 412",
        status=204,
        tag="sessions",
        headers=("If-Match",),
    ),
    Route(
        "POST",
        "/sessions/{id}/fork",
        fork_session,
        "A new session branching from this one, with parent_session_id",
        body=_FORK_BODY,
        response=session.Session,
        status=201,
        tag="sessions",
        response_headers=("ETag",),
    ),
    Route(
        "POST",
        "/sessions/{id}/touch",
        touch_session,
        "Record an access: a new last_accessed_at, first in the list",
        response=session.Session,
        tag="sessions",
        response_headers=("ETag",),
    ),
]
