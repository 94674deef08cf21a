"""The session service's key layout under ``("session", …)`` and the transaction steps over it.

    ("session", "session", id)                                    → SessionRecord
    ("session", "recent", tenant, user, -accessed_us, id)         → ""          the access order of a user's
                                                                                 sessions, most recent first
                                                                    or pack((moved_us,)): a tombstone, the
                                                                                 session's place before it was
                                                                                 accessed again at moved_us
    ("session", "moved", moved_us, tenant, user, -accessed_us, id) → ""          tombstones by age, pruned once
                                                                                 no cursor can need them
    ("session", "status", tenant, user, status, id)               → ""          active ones count for the quota;
                                                                                 active and suspended ones end on
                                                                                 logout-all, removal, tenant deletion
    ("session", "active_count", tenant, user)                      → int64 (LE)  the user's active sessions: the
                                                                                 quota reads one key, whatever
                                                                                 the limit (atomic add)
    ("session", "idle", accessed_us, id)                           → ""          active sessions by last access,
                                                                                 across users: the idle sweep
    ("session", "processed", event_id)                             → processed_us  consumed events (idempotency)
    ("session", "processed_at", processed_us, event_id)            → ""          markers by age, pruned
    ("session", "outbox", …)                                       → staged events
    ("session", "outbox_dead_letter", …)                           → staged events that could not be decoded

Times in keys are integer microseconds since the epoch. Every index is written in the transaction
that writes the record (``insert``, ``save``, ``remove``). A list reads the "recent" index as of a
snapshot time: an entry counts if it was current then (accessed_us <= snapshot < moved_us), so a
session accessed while a client pages keeps its place for that client: no page repeats or skips it.

Every function takes the transaction as its first argument and holds no awaits.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from uuid import UUID

import fdb.tuple

from contracts import session as api
from services.session import rules
from shared.decoded import DecodedCache
from shared.dispatch import Encoded
from shared.store import Transaction, decode_counter
from shared.store.tuples import FastSubspace

ROOT = FastSubspace(("session",))  # fdb's keys, packed faster (shared.store.tuples)
SESSION = ROOT["session"]
RECENT = ROOT["recent"]
MOVED = ROOT["moved"]
STATUS = ROOT["status"]
ACTIVE_COUNT = ROOT["active_count"]
IDLE = ROOT["idle"]
PROCESSED = ROOT["processed"]
PROCESSED_AT = ROOT["processed_at"]
OUTBOX = ROOT["outbox"]
OUTBOX_DEAD_LETTER = ROOT["outbox_dead_letter"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_CHUNK = 100


class SessionRecord(api.Session):
    """A stored session: today exactly what clients see."""

    def public(self) -> api.Session:
        return api.Session.model_validate(self.model_dump())


class Position(NamedTuple):
    """A place in a user's access order: the key of one "recent" entry."""

    neg_accessed_us: int
    session_id: str


def micros(at: datetime) -> int:
    """Exact integer microseconds (a float timestamp would round some of them)."""
    return (at - _EPOCH) // _MICROSECOND


class _Ids(NamedTuple):
    """A record's ids as key text, made once per write (``str(UUID)`` is pure Python, and one insert
    names them in five keys)."""

    tenant: str
    user: str
    session: str

    @classmethod
    def of(cls, record: api.Session) -> _Ids:
        return cls(str(record.tenant_id), str(record.user_id), str(record.id))


def _recent_key(record: api.Session, ids: _Ids | None = None) -> bytes:
    ids = ids or _Ids.of(record)
    key: bytes = RECENT.pack((ids.tenant, ids.user, -micros(record.last_accessed_at), ids.session))
    return key


def _status_key(record: api.Session, ids: _Ids | None = None) -> bytes:
    ids = ids or _Ids.of(record)
    key: bytes = STATUS.pack((ids.tenant, ids.user, record.status, ids.session))
    return key


def _idle_key(record: api.Session, ids: _Ids | None = None) -> bytes:
    key: bytes = IDLE.pack((micros(record.last_accessed_at), ids.session if ids else str(record.id)))
    return key


def get(tx: Transaction, session_id: UUID) -> SessionRecord | None:
    raw = tx.get(SESSION.pack((str(session_id),)))
    return None if raw is None else SessionRecord.model_validate_json(raw)


def _public_of(raw: bytes) -> tuple[api.Session, Encoded]:
    public = SessionRecord.model_validate_json(raw).public()
    return public, Encoded(public)


_PUBLIC = DecodedCache(_public_of)


def get_public(tx: Transaction, session_id: UUID) -> tuple[api.Session, Encoded] | None:
    """A session as clients see it and its reply JSON, for reading only: made once per stored value
    and shared between reads (``shared.decoded``), so never to be changed."""
    raw = tx.get(SESSION.pack((str(session_id),)))
    return None if raw is None else _PUBLIC(raw)


def _put(tx: Transaction, record: SessionRecord, ids: _Ids | None = None) -> None:
    tx.set(SESSION.pack((ids.session if ids else str(record.id),)), record.__pydantic_serializer__.to_json(record))


def insert(tx: Transaction, record: SessionRecord) -> None:
    ids = _Ids.of(record)
    _put(tx, record, ids)
    tx.set(_recent_key(record, ids), b"")
    tx.set(_status_key(record, ids), b"")
    if record.status == "active":
        tx.set(_idle_key(record, ids), b"")
        _count(tx, record, 1, ids)


def _count(tx: Transaction, record: SessionRecord, delta: int, ids: _Ids | None = None) -> None:
    ids = ids or _Ids.of(record)
    tx.add(ACTIVE_COUNT.pack((ids.tenant, ids.user)), delta)


def save(tx: Transaction, before: SessionRecord, after: SessionRecord) -> None:
    """Write a changed session and move its index entries with it."""
    _put(tx, after)
    if before.status != after.status:
        tx.clear(_status_key(before))
        tx.set(_status_key(after), b"")
        if "active" in (before.status, after.status):
            _count(tx, after, 1 if after.status == "active" else -1)
    if before.status == "active" and (after.status != "active" or after.last_accessed_at != before.last_accessed_at):
        tx.clear(_idle_key(before))
    if after.status == "active":
        tx.set(_idle_key(after), b"")
    if after.last_accessed_at != before.last_accessed_at:
        moved_us = micros(after.last_accessed_at)
        old = _recent_key(before)
        tx.set(old, fdb.tuple.pack((moved_us,)))
        tx.set(MOVED.pack((moved_us, *RECENT.unpack(old))), b"")
        tx.set(_recent_key(after), b"")


def remove(tx: Transaction, record: SessionRecord) -> None:
    """Forget a session. Its tombstones, if any, point at nothing now and are pruned with age."""
    tx.clear(SESSION.pack((str(record.id),)))
    tx.clear(_recent_key(record))
    tx.clear(_status_key(record))
    if record.status == "active":
        tx.clear(_idle_key(record))
        _count(tx, record, -1)


def count_active(tx: Transaction, tenant_id: UUID, user_id: UUID, up_to: int) -> int:
    """How many active sessions the user has: one key, kept by every status change (``up_to`` is kept
    for callers; the count no longer depends on it)."""
    return decode_counter(tx.get(ACTIVE_COUNT.pack((str(tenant_id), str(user_id)))))


def live_batch(
    tx: Transaction, after: bytes | None, limit: int, *, tenant_id: UUID, user_id: UUID
) -> tuple[list[SessionRecord], bytes | None]:
    """Up to ``limit`` of the user's active and suspended sessions ("active" < "suspended" < "terminated"
    in key order, so they are one range), and where the next batch starts (None: this was the last)."""
    space = STATUS[str(tenant_id)][str(user_id)]
    begin = after if after is not None else space["active"].range().start
    rows = tx.get_range(begin, space["suspended"].range().stop, limit=limit)
    records = [r for key, _ in rows if (r := get(tx, UUID(space.unpack(key)[1]))) is not None]
    return records, rows[-1][0] + b"\x00" if len(rows) == limit else None


def tenant_live_batch(
    tx: Transaction, after: bytes | None, limit: int, *, tenant_id: UUID
) -> tuple[list[SessionRecord], bytes | None]:
    """Up to ``limit`` active and suspended sessions of every user of the tenant, user after user, and
    where the next batch starts (None: the tenant is done). A user's terminated entries come after
    their live ones, so the first terminated entry met skips to the next user: at most one wasted
    entry per user, however many sessions they ended before. At most ``limit`` range reads."""
    space = STATUS[str(tenant_id)]
    begin = after if after is not None else space.range().start
    end = space.range().stop
    found: list[SessionRecord] = []
    for _ in range(limit):
        want = limit - len(found)
        rows = tx.get_range(begin, end, limit=want)
        for key, _ in rows:
            user_id, status, session_id = space.unpack(key)
            if status == "terminated":
                begin = space[user_id].range().stop  # past this user's terminated entries
                break
            if (record := get(tx, UUID(session_id))) is not None:
                found.append(record)
            begin = key + b"\x00"
        else:
            if len(rows) < want:
                return found, None
        if len(found) == limit:
            break
    return found, begin


def page(
    tx: Transaction,
    tenant_id: UUID,
    user_id: UUID,
    *,
    snapshot_us: int,
    after: Position | None,
    status: api.Status | None,
    limit: int,
    max_scan: int,
) -> tuple[list[SessionRecord], Position | None]:
    """The user's sessions in access order as of ``snapshot_us``, after ``after``; and the position
    to continue from (None at the end). A page may be short when ``max_scan`` entries did not fill it
    (a status filter matching few sessions); its position then continues the scan."""
    space = RECENT[str(tenant_id)][str(user_id)]
    begin = space.pack(after) + b"\x00" if after is not None else space.range().start
    end = space.range().stop
    found: list[tuple[SessionRecord, Position]] = []
    scanned = 0
    while True:
        rows = tx.get_range(begin, end, limit=_CHUNK)
        for key, value in rows:
            scanned += 1
            position = Position(*space.unpack(key))
            moved_us = fdb.tuple.unpack(value)[0] if value else None
            if rules.current_at(-position.neg_accessed_us, moved_us, snapshot_us):
                record = get(tx, UUID(position.session_id))
                if record is not None and (status is None or record.status == status):
                    if len(found) == limit:  # one more exists: the page ends at the last one taken
                        return [r for r, _ in found], found[-1][1]
                    found.append((record, position))
            if scanned >= max_scan:
                return [r for r, _ in found], position
        if len(rows) < _CHUNK:
            return [r for r, _ in found], None
        begin = rows[-1][0] + b"\x00"


def idle_batch(tx: Transaction, accessed_before: datetime, limit: int) -> list[SessionRecord]:
    """Active sessions last accessed before the given time, oldest first."""
    rows = tx.get_range(IDLE.range().start, IDLE.pack((micros(accessed_before),)), limit=limit)
    found = []
    for key, _ in rows:
        record = get(tx, UUID(IDLE.unpack(key)[1]))
        if record is None or record.status != "active" or _idle_key(record) != key:
            tx.clear(key)  # an entry its session no longer backs; never expected, never left behind
            continue
        found.append(record)
    return found


def prune_tombstones(tx: Transaction, moved_before: datetime, limit: int) -> int:
    """Clear tombstones older than any honoured cursor; returns how many."""
    rows = tx.get_range(MOVED.range().start, MOVED.pack((micros(moved_before),)), limit=limit)
    for key, _ in rows:
        tx.clear(RECENT.pack(MOVED.unpack(key)[1:]))
        tx.clear(key)
    return len(rows)


def processed(tx: Transaction, event_id: uuid.UUID) -> bool:
    return tx.get(PROCESSED.pack((str(event_id),))) is not None


def mark_processed(tx: Transaction, event_id: uuid.UUID, at: datetime) -> None:
    at_us = micros(at)
    tx.set(PROCESSED.pack((str(event_id),)), fdb.tuple.pack((at_us,)))
    tx.set(PROCESSED_AT.pack((at_us, str(event_id))), b"")


def prune_processed(tx: Transaction, processed_before: datetime, limit: int) -> int:
    rows = tx.get_range(PROCESSED_AT.range().start, PROCESSED_AT.pack((micros(processed_before),)), limit=limit)
    for key, _ in rows:
        tx.clear(PROCESSED.pack((PROCESSED_AT.unpack(key)[1],)))
        tx.clear(key)
    return len(rows)
