"""A caller sees only their own workspace: another tenant's (or another user's) events and files are
invisible, a body cannot name someone else's workspace, and a cursor cannot be carried across."""

from __future__ import annotations

from tests.file_event.helpers import (
    all_events,
    call,
    change,
    connect,
    consumed,
    get,
    member_of,
    new_user,
    publish,
    subject_of,
)
from tests.support import Gateway


async def test_tenant_a_cannot_read_tenant_b_files_events_or_history(system: Gateway) -> None:
    a, b = await new_user(system), await new_user(system)
    colleague = await member_of(system, a)
    nc = await connect(system)
    try:
        await publish(nc, subject_of(b), [change("secret/plan.md", size=7), change("secret/keys.txt", second=1)])
    finally:
        await nc.close()
    # A posts with B's ids in the body (and per event): ignored, the change is A's.
    forged = {"tenant_id": b.tenant_id, "user_id": b.id, "caller": {"tenant_id": b.tenant_id, "user_id": b.id}}
    status, body, _ = await call(
        system, "POST", "/files/events", a, {"events": [{**change("mine.txt"), **forged}], **forged}
    )
    assert status == 202, body
    await consumed(system, 3)

    assert [e["path"] for e in await all_events(system, b)] == ["secret/plan.md", "secret/keys.txt"]
    for other in (a, colleague):
        assert all(e["path"] == "mine.txt" for e in await all_events(system, other))
        status, body, _ = await call(system, "GET", "/files", other, prefix="secret")
        assert status == 200 and body["data"]["items"] == []
        status, body, _ = await call(system, "GET", "/files", other)
        assert status == 200 and all(f["path"] == "mine.txt" for f in body["data"]["items"])
        status, body = await get(system, "/files/history", other, path="secret/plan.md")
        assert status == 200 and body["data"]["items"] == []
    assert [e["path"] for e in await all_events(system, a)] == ["mine.txt"]
    assert await all_events(system, colleague) == []

    # B's cursor names a position, never a workspace: in A's hands it pages A's own events.
    status, body, _ = await call(system, "GET", "/files/events", b, limit=1)
    cursor = body["data"]["next_cursor"]
    assert cursor
    status, body, _ = await call(system, "GET", "/files/events", a, cursor=cursor)
    assert status == 200 and all(e["path"] == "mine.txt" for e in body["data"]["items"])
