"""The rules of a workspace session as plain functions over data: ownership, the state machine,
preconditions, the quota, access times and list cursors. No store, no bus."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Final, TypeVar

import fdb.tuple

from contracts import session as api
from contracts.envelope import ErrorCode
from contracts.identity import Caller
from shared.cursors import decode_cursor, encode_cursor
from shared.errors import ServiceError

S = TypeVar("S", bound=api.Session)

# active ⇄ suspended → terminated; terminated is final.
TRANSITIONS: Final[dict[api.Status, frozenset[api.Status]]] = {
    "active": frozenset({"suspended", "terminated"}),
    "suspended": frozenset({"active", "terminated"}),
    "terminated": frozenset(),
}
FORK_SUFFIX: Final = " (fork)"
_CURSOR_PREFIX: Final = b"sessions:1:"
_CURSOR_DETAILS: Final = [{"field": "cursor", "message": "not a cursor this list returned"}]


def owned(session: S | None, caller: Caller) -> S:
    """The caller's own session. Anyone else's, in this tenant or another, is "not found": one rule
    on every route, so a session id tells nothing about whether it exists."""
    if session is None or session.user_id != caller.user_id or session.tenant_id != caller.tenant_id:
        raise not_found()
    return session


def not_found() -> ServiceError:
    return ServiceError(ErrorCode.NOT_FOUND, "session not found")


def check_precondition(session: api.Session, if_match: list[int] | None) -> None:
    if if_match is not None and session.version not in if_match:
        raise ServiceError(
            ErrorCode.PRECONDITION_FAILED,
            "the session changed since the version named by If-Match",
            {"current_version": session.version},
        )


def check_transition(current: api.Status, target: api.Status) -> None:
    if target != current and target not in TRANSITIONS[current]:
        raise ServiceError(
            ErrorCode.INVALID_TRANSITION,
            f"a {current} session cannot become {target}"
            + (": terminated is final" if current == "terminated" else ""),
            {"from": current, "to": target},
        )


def check_quota(active: int, maximum: int) -> None:
    if active >= maximum:
        raise ServiceError(
            ErrorCode.SESSION_QUOTA_EXCEEDED,
            f"at most {maximum} active sessions per user: suspend, terminate or delete one first",
            {"max_active_sessions": maximum},
        )


def check_not_terminated(session: api.Session) -> None:
    if session.status == "terminated":
        raise ServiceError(ErrorCode.SESSION_TERMINATED, "the session is terminated: it cannot change")


def default_workspace_path(session_id: uuid.UUID) -> str:
    return str(session_id)


def fork_name(parent_name: str) -> str:
    """``<name> (fork)``, shortening the parent's name so the result stays within the limit."""
    return parent_name[: api.NAME_MAX - len(FORK_SUFFIX)].rstrip() + FORK_SUFFIX


def next_access(session: api.Session, now: datetime) -> datetime:
    """A new last access: now, and always later than the previous one (it orders the list)."""
    return max(now, session.last_accessed_at + timedelta(microseconds=1))


def new_session(
    model: type[S],
    caller: Caller,
    *,
    name: str,
    workspace_path: str | None,
    now: datetime,
    parent: api.Session | None = None,
) -> S:
    session_id = uuid.uuid4()
    return model(
        id=session_id,
        tenant_id=caller.tenant_id,
        user_id=caller.user_id,
        name=name,
        workspace_path=workspace_path or default_workspace_path(session_id),
        status="active",
        parent_session_id=parent.id if parent is not None else None,
        version=1,
        created_at=now,
        updated_at=now,
        last_accessed_at=now,
    )


def changed(session: S, now: datetime, **changes: object) -> S:
    """The session with ``changes`` applied as one new version."""
    return session.model_copy(update={**changes, "version": session.version + 1, "updated_at": now})


def _status_change(session: api.Session, status: api.Status, now: datetime) -> dict[str, object]:
    """A move of the state machine. Resuming is an access: the idle sweep must not suspend it again at once."""
    check_transition(session.status, status)
    if status == "active":
        return {"status": status, "last_accessed_at": next_access(session, now)}
    return {"status": status}


def with_status(session: S, status: api.Status, now: datetime) -> S:
    return changed(session, now, **_status_change(session, status, now))


def updated(session: S, *, name: str | None, status: api.Status | None, now: datetime) -> S | None:
    """The session after a client's update, or None when it changes nothing (no new version)."""
    changes: dict[str, object] = {}
    if status is not None and status != session.status:
        changes.update(_status_change(session, status, now))
    if name is not None and name != session.name:
        check_not_terminated(session)
        changes["name"] = name
    return changed(session, now, **changes) if changes else None


def touched(session: S, now: datetime) -> S:
    """A recorded access: it reorders the list and postpones the idle sweep. It is not a change of the
    session's state, so neither ``version`` (its ETag) nor ``updated_at`` moves and no event is sent."""
    check_not_terminated(session)
    return session.model_copy(update={"last_accessed_at": next_access(session, now)})


def current_at(accessed_us: int, moved_us: int | None, snapshot_us: int) -> bool:
    """Whether an access-order entry was a session's current place at the snapshot time."""
    return accessed_us <= snapshot_us and (moved_us is None or snapshot_us < moved_us)


def encode_list_cursor(snapshot_us: int, position: tuple[int, str]) -> str:
    return encode_cursor(_CURSOR_PREFIX + fdb.tuple.pack((snapshot_us, *position)))


def decode_list_cursor(cursor: str, *, now_us: int, ttl: timedelta) -> tuple[int, tuple[int, str]]:
    """The snapshot time and position a cursor carries; 422 if it is not one of ours or too old."""
    raw = decode_cursor(cursor, _CURSOR_PREFIX)
    try:
        snapshot_us, neg_accessed_us, session_id = fdb.tuple.unpack(raw[len(_CURSOR_PREFIX) :])
        uuid.UUID(session_id)
    except Exception as error:
        raise ServiceError(ErrorCode.VALIDATION_FAILED, "the cursor is not valid", _CURSOR_DETAILS) from error
    if not (isinstance(snapshot_us, int) and isinstance(neg_accessed_us, int)):
        raise ServiceError(ErrorCode.VALIDATION_FAILED, "the cursor is not valid", _CURSOR_DETAILS)
    if now_us - snapshot_us > ttl // timedelta(microseconds=1):
        raise ServiceError(
            ErrorCode.VALIDATION_FAILED,
            "the cursor has expired: list again from the first page",
            [{"field": "cursor", "message": "expired"}],
        )
    return snapshot_us, (neg_accessed_us, session_id)
