"""The file-event service's key layout under ``("file_event", …)`` and the transaction steps over it.

    ("file_event", "seen", ws, event_id)                       → pack((occurred_us,))  idempotency marker:
                                                                  an event id is stored once per workspace
    ("file_event", "log", ws, occurred_us, event_id)           → StoredFileChange JSON   the event log, in time
                                                                  order (the event id breaks ties)
    ("file_event", "file", ws, path)                           → FileInfo JSON           current metadata
    ("file_event", "hist", ws, path, occurred_us, event_id)    → ""                      one path's events (a move
                                                                  is in the history of both of its paths)
    ("file_event", "tree", ws, event_id)                        → TreeJob JSON            a directory's move (or
                                                                  deletion) whose entries are still being carried
    ("file_event", "tree_parked", ws, event_id)                 → {job, error, attempts}  a job that kept failing,
                                                                  set aside (not carried on) for an operator
    ("file_event", "outbox", …) / ("file_event", "outbox_dead_letter", …)   staged ``file.changed`` events

``ws`` and ``event_id`` are tuple-layer UUIDs (16 bytes), times integer microseconds since the epoch.
An event costs four writes (marker, log, history, and its path's metadata, written once per path per
batch however often the path changed in it) and two point reads (marker, metadata once per path), which
a batch makes together in one ``get_many`` (``recording.record``).
Every function takes the transaction as its first argument and holds no awaits.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

import fdb.tuple
import orjson
from fdb.subspace_impl import Subspace

from contracts import file_event as api
from services.file_event.metadata import Meta
from shared.store import Transaction

ROOT = Subspace(("file_event",))
SEEN = ROOT["seen"]
LOG = ROOT["log"]
FILE = ROOT["file"]
HIST = ROOT["hist"]
TREE = ROOT["tree"]
TREE_PARKED = ROOT["tree_parked"]
OUTBOX = ROOT["outbox"]
OUTBOX_DEAD_LETTER = ROOT["outbox_dead_letter"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A tuple-layer string is 0x02, its UTF-8 bytes, 0x00: a path prefix is a key prefix without the end.
_STRING_CODE = b"\x02"


def micros(at: datetime) -> int:
    """Exact integer microseconds; a time without a zone is taken as UTC."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    delta = at - _EPOCH  # its fields are exact; floor-dividing timedeltas cost more (the ingest profile)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _uuid(value: UUID) -> bytes:
    return b"\x30" + value.bytes


def _str(value: str) -> bytes:
    return _STRING_CODE + value.encode().replace(b"\x00", b"\x00\xff") + b"\x00"


def _int(value: int) -> bytes:
    if 0 < value < 1 << 64:
        length = (value.bit_length() + 7) // 8
        return bytes((0x14 + length,)) + value.to_bytes(length, "big")
    packed: bytes = fdb.tuple.pack((value,))
    return packed


class WorkspaceKeys:
    """The tuple-layer keys of one workspace, encoded by hand from prefixes computed once: the ingest
    path writes four keys per event, and the pure-Python tuple packer cost more than the writes
    (``tests/file_event/test_keys.py`` pins them to ``fdb.tuple``'s encoding)."""

    def __init__(self, ws: UUID) -> None:
        self.seen: bytes = SEEN.pack((ws,))
        self.log: bytes = LOG.pack((ws,))
        self.hist: bytes = HIST.pack((ws,))
        self.file: bytes = FILE.pack((ws,))

    def seen_key(self, event_id: UUID) -> bytes:
        return self.seen + _uuid(event_id)

    def log_key(self, at: int, event_id: UUID) -> bytes:
        return self.log + _int(at) + _uuid(event_id)

    def hist_key(self, path: str, at: int, event_id: UUID) -> bytes:
        return self.hist + _str(path) + _int(at) + _uuid(event_id)

    def file_key(self, path: str) -> bytes:
        return self.file + _str(path)

    def files_under(self, folder: str, after: str | None) -> tuple[bytes, bytes]:
        """The metadata keys of every path below ``folder`` (at any depth), after the path ``after``."""
        begin = self.file + _STRING_CODE + (folder + "/").encode()
        end = begin + b"\xff"  # UTF-8 never contains 0xff
        if after is not None:
            begin = max(begin, self.file_key(after) + b"\x00")  # the next key after ``after``'s
        return begin, end


# Fields whose defaults are made at validation (a fresh id, the time of receipt): a body leaving them out
# is stored as validated, else every read would make them anew.
_MADE_BY_DEFAULT = frozenset({"event_id", "occurred_at"})


def log_value(change: api.FileChange, body: bytes | None, recorded_at: bytes) -> bytes:
    """The log entry: the change with ``recorded_at`` (an ISO time as JSON) spliced in as its last field.
    The body as received when it names every field a default would make: reading it back validates it
    the same way (``StoredFileChange`` is a ``FileChange``: the path normalised, unknown fields ignored,
    a duplicate key's last value taken, so the spliced ``recorded_at`` wins); that saves serialising
    every change again (5 % of the ingest's time under load, the profile). Else the model's JSON."""
    if body is not None and change.model_fields_set >= _MADE_BY_DEFAULT:
        body = body.rstrip()
        if body.endswith(b"}"):
            return body[:-1] + b',"recorded_at":' + recorded_at + b"}"
    return change.model_dump_json(exclude_none=True).encode()[:-1] + b',"recorded_at":' + recorded_at + b"}"


def append(
    tx: Transaction, keys: WorkspaceKeys, change: api.FileChange, recorded_at: bytes, body: bytes | None = None
) -> None:
    """Write one new event: marker, log entry (``log_value``) and history entries."""
    at = _int(micros(change.occurred_at))
    event = _uuid(change.event_id)
    value = log_value(change, body, recorded_at)
    # The keys of seen_key, log_key and hist_key, their parts encoded once.
    tx.set(keys.seen + event, at)
    tx.set(keys.log + at + event, value)
    tx.set(keys.hist + _str(change.path) + at + event, b"")
    if change.old_path is not None:
        tx.set(keys.hist + _str(change.old_path) + at + event, b"")


def get_file(tx: Transaction, keys: WorkspaceKeys, path: str) -> Meta | None:
    raw = tx.get(keys.file_key(path))
    return None if raw is None else Meta.decode(raw)


def put_file(tx: Transaction, keys: WorkspaceKeys, info: Meta) -> bytes:
    """Write a path's metadata; returns the bytes written."""
    raw = info.encode()
    tx.set(keys.file_key(info.path), raw)
    return raw


def history_mark(tx: Transaction, keys: WorkspaceKeys, path: str, at: int, event_id: UUID) -> None:
    """Put an event in one more path's history (an entry carried by its directory's move)."""
    tx.set(keys.hist_key(path, at, event_id), b"")


def files_under(tx: Transaction, keys: WorkspaceKeys, folder: str, *, after: str | None, limit: int) -> list[Meta]:
    """The metadata of paths below ``folder``, in path order, after ``after``; at most ``limit``."""
    begin, end = keys.files_under(folder, after)
    return [Meta.decode(value) for _, value in tx.get_range(begin, end, limit=limit)]


def tree_key(ws: UUID, event_id: UUID) -> bytes:
    key: bytes = TREE.pack((ws, event_id))
    return key


def get_tree_job(tx: Transaction, ws: UUID, event_id: UUID) -> bytes | None:
    return tx.get(tree_key(ws, event_id))


def put_tree_job(tx: Transaction, ws: UUID, event_id: UUID, value: bytes) -> None:
    tx.set(tree_key(ws, event_id), value)


def clear_tree_job(tx: Transaction, ws: UUID, event_id: UUID) -> None:
    tx.clear(tree_key(ws, event_id))


def tree_jobs(tx: Transaction, limit: int, after: tuple[UUID, UUID] | None = None) -> list[tuple[UUID, UUID]]:
    """(workspace, event id) of directory moves still being carried, in key order, after ``after``."""
    begin = TREE.range().start if after is None else tree_key(*after) + b"\x00"
    rows = tx.get_range(begin, TREE.range().stop, limit=limit)
    return [(ws, event_id) for ws, event_id in (TREE.unpack(key) for key, _ in rows)]


def parked_tree_key(ws: UUID, event_id: UUID) -> bytes:
    key: bytes = TREE_PARKED.pack((ws, event_id))
    return key


def park_tree_job(tx: Transaction, ws: UUID, event_id: UUID, error: str, attempts: int) -> None:
    """Set a job that kept failing aside, with why: it is no longer carried on (an operator may move it back)."""
    raw = tx.get(tree_key(ws, event_id))
    if raw is None:
        return  # finished (or parked) meanwhile
    job = raw.decode(errors="replace")
    tx.set(parked_tree_key(ws, event_id), orjson.dumps({"job": job, "error": error, "attempts": attempts}))
    tx.clear(tree_key(ws, event_id))


def _log_entry(tx: Transaction, ws: UUID, at: int, event_id: UUID) -> api.StoredFileChange | None:
    raw = tx.get(LOG.pack((ws, at, event_id)))
    return None if raw is None else api.StoredFileChange.model_validate_json(raw)


def prefix_range(space: Subspace, prefix: str | None) -> tuple[bytes, bytes]:
    """Keys of ``space`` whose next element is a string starting with ``prefix``."""
    if not prefix:
        return space.range().start, space.range().stop
    begin: bytes = space.key() + _STRING_CODE + prefix.encode()
    return begin, begin + b"\xff"  # UTF-8 never contains 0xff


def events_page(
    tx: Transaction,
    ws: UUID,
    *,
    begin_us: int | None,
    end_us: int | None,
    after: tuple[int, UUID] | None,
    keep: Callable[[api.StoredFileChange], bool],
    limit: int,
    max_scan: int,
) -> tuple[list[api.StoredFileChange], tuple[int, UUID] | None]:
    """Events of the workspace in time order within [begin_us, end_us), after ``after``, that ``keep``
    accepts; and where the next page starts (None at the end). Short when ``max_scan`` ran out."""
    space = LOG[ws]
    begin = space.range().start if begin_us is None else space.pack((begin_us,))
    if after is not None:
        begin = max(begin, space.pack(after) + b"\x00")
    end = space.range().stop if end_us is None else space.pack((end_us,))
    found: list[api.StoredFileChange] = []
    scanned = 0
    position: tuple[int, UUID] | None = None
    while begin < end:
        rows = tx.get_range(begin, end, limit=min(200, max_scan - scanned + 1))
        for key, value in rows:
            at, event_id = space.unpack(key)
            change = api.StoredFileChange.model_validate_json(value)
            if keep(change):
                if len(found) == limit:
                    return found, position
                found.append(change)
            position = (at, event_id)
            scanned += 1
            if scanned >= max_scan:
                return found, position
        if len(rows) < 200:
            return found, None
        begin = rows[-1][0] + b"\x00"
    return found, None


def history_page(
    tx: Transaction, ws: UUID, path: str, *, after: tuple[int, UUID] | None, limit: int
) -> tuple[list[api.StoredFileChange], tuple[int, UUID] | None]:
    """One path's events, oldest first, after ``after``; and where the next page starts."""
    space = HIST[ws][path]
    begin = space.range().start if after is None else space.pack(after) + b"\x00"
    rows = tx.get_range(begin, space.range().stop, limit=limit + 1)
    items = []
    for key, _ in rows[:limit]:
        at, event_id = space.unpack(key)
        entry = _log_entry(tx, ws, at, event_id)
        if entry is not None:
            items.append(entry)
    if len(rows) <= limit:
        return items, None
    at, event_id = space.unpack(rows[limit - 1][0])
    return items, (at, event_id)


def files_page(
    tx: Transaction, ws: UUID, prefix: str | None, *, after: str | None, limit: int
) -> tuple[list[api.FileInfo], str | None]:
    """Current files under a path prefix, in path order, after ``after``; and the last path if more follow."""
    space = FILE[ws]
    begin, end = prefix_range(space, prefix)
    if after is not None:
        begin = max(begin, space.pack((after,)) + b"\x00")
    rows = tx.get_range(begin, end, limit=limit + 1)
    items = [api.FileInfo.model_validate_json(value) for _, value in rows[:limit]]
    return items, (items[-1].path if len(rows) > limit else None)
