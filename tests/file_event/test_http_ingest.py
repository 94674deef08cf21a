"""``POST /files/events``: a client's changes go onto the caller's own workspace subject and are stored
by the same consumer; a bad event makes the whole request 422, naming every bad one."""

from __future__ import annotations

import time
import uuid

from tests.file_event.helpers import all_events, call, change, consumed, get, new_user
from tests.support import Gateway


async def test_posted_events_are_accepted_stored_and_duplicates_counted_once(system: Gateway) -> None:
    user = await new_user(system)
    events = [change(f"web/{i}.ts", second=i, size=i) for i in range(3)]
    status, body, _ = await call(system, "POST", "/files/events", user, {"events": [*events, events[0]]})
    assert (status, body["data"]) == (202, {"accepted": 3}), body
    status, body, _ = await call(system, "POST", "/files/events", user, {"events": events})  # a client retry
    assert status == 202, body
    await consumed(system, 3)
    stored = await all_events(system, user)
    assert [e["event_id"] for e in stored] == [e["event_id"] for e in events]
    status, body = await get(system, "/files/history", user, path="web/1.ts")
    assert status == 200 and [e["size"] for e in body["data"]["items"]] == [1]


async def test_events_without_id_or_time_get_them(system: Gateway) -> None:
    user = await new_user(system)
    status, body, _ = await call(system, "POST", "/files/events", user, {"events": [{"path": "a", "kind": "created"}]})
    assert status == 202, body
    await consumed(system, 1)
    (stored,) = await all_events(system, user)
    assert uuid.UUID(stored["event_id"]) and stored["occurred_at"] and stored["actor"] == "user"


async def test_traversal_absolute_nul_oversized_and_bad_moves_are_422_naming_each_event(system: Gateway) -> None:
    user = await new_user(system)
    bad = [
        change("ok.txt"),
        change("../../etc/passwd"),
        change("/etc/passwd"),
        change("a\u0000b"),
        change("x" * 4097),
        change("b.txt", "moved"),  # no old_path
        change("c.txt", "renamed"),
        change("d.txt", sha256="not-hex"),
    ]
    status, body, _ = await call(system, "POST", "/files/events", user, {"events": bad})
    assert status == 422, body
    assert body["error"]["code"] == "VALIDATION_FAILED"
    fields = {detail["field"] for detail in body["error"]["details"]}
    named = {int(field.split(".")[1]) for field in fields if field.startswith("events.")}
    assert named == {1, 2, 3, 4, 5, 6, 7}, fields
    assert "events.1.path" in fields and "events.4.path" in fields
    # Nothing of the request was taken, the good event included.
    status, body = await get(system, "/files/history", user, path="ok.txt")
    assert status == 200 and body["data"]["items"] == []
    assert await all_events(system, user) == []


async def test_batch_limits_and_bad_queries_are_4xx(system: Gateway) -> None:
    user = await new_user(system)
    too_many = [{"path": f"p{i}", "kind": "created"} for i in range(1001)]
    status, body, _ = await call(system, "POST", "/files/events", user, {"events": too_many})
    assert (status, body["error"]["code"]) == (422, "VALIDATION_FAILED")
    status, body, _ = await call(system, "POST", "/files/events", user, {"events": []})
    assert status == 422, body
    status, body, _ = await call(system, "GET", "/files/events", user, cursor="garbage!!")
    assert (status, body["error"]["code"]) == (422, "VALIDATION_FAILED")
    status, body, _ = await call(system, "GET", "/files/events", user, kind="exploded")
    assert status == 422, body
    status, body = await get(system, "/files/history", user, path="../x")
    assert status == 422, body
    status, body, _ = await call(system, "GET", "/files")
    assert status == 401, body


async def test_a_stopped_file_event_service_is_a_fast_503(system: Gateway) -> None:
    user = await new_user(system)
    await system.services["file_event"].shutdown()
    started = time.monotonic()
    status, body, _ = await call(system, "POST", "/files/events", user, {"events": [change("a.txt")]})
    assert (status, body["error"]["code"]) == (503, "SERVICE_UNAVAILABLE")
    status, body, _ = await call(system, "GET", "/files", user)
    assert status == 503, body
    assert time.monotonic() - started < 2.0
