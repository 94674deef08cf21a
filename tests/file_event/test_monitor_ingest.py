"""A workspace monitor publishes on its workspace's subject; the service stores each change once, in
time order, with the current metadata and history of every path, and dead-letters what it can never store."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import orjson

from contracts import file_event as api
from contracts import subjects
from services.file_event import recording
from services.file_event.ingest import DURABLE
from tests.file_event.helpers import (
    BASE_TIME,
    all_events,
    call,
    change,
    connect,
    consumed,
    dead_letters,
    files_ctx,
    get,
    new_user,
    publish,
    subject_of,
)
from tests.support import Gateway

SHA_A = "a" * 64
SHA_B = "b" * 64


async def test_created_modified_moved_deleted_give_events_in_order_metadata_and_history(system: Gateway) -> None:
    user = await new_user(system)
    session_id = str(uuid.uuid4())
    events = [
        change("src/a.py", "created", second=1, size=10, sha256=SHA_A, session_id=session_id),
        change("src/a.py", "modified", second=2, size=20, sha256=SHA_B, actor="claude-code"),
        change("src/b.py", "moved", second=3, old_path="src/a.py", actor="claude-code"),
        change("docs/readme.md", "created", second=4, size=5),
        change("docs/readme.md", "deleted", second=5),
    ]
    nc = await connect(system)
    try:
        # Published out of time order: the log is in time order all the same.
        await publish(nc, subject_of(user), [events[3], events[0], events[1], events[2], events[4]])
    finally:
        await nc.close()
    await consumed(system, 5)

    stored = await all_events(system, user)
    assert [e["event_id"] for e in stored] == [e["event_id"] for e in events]
    assert [e["kind"] for e in stored] == ["created", "modified", "moved", "created", "deleted"]
    assert stored[2]["old_path"] == "src/a.py" and stored[1]["actor"] == "claude-code"

    status, body, _ = await call(system, "GET", "/files", user)
    assert status == 200, body
    files = {f["path"]: f for f in body["data"]["items"]}
    assert list(files) == ["docs/readme.md", "src/a.py", "src/b.py"]  # path order
    moved = files["src/b.py"]
    assert (moved["size"], moved["sha256"], moved["versions"], moved["deleted"]) == (20, SHA_B, 3, False)
    assert moved["last_actor"] == "claude-code"
    assert files["src/a.py"]["deleted"] is True
    assert files["docs/readme.md"]["deleted"] is True and files["docs/readme.md"]["size"] == 5

    status, body, _ = await call(system, "GET", "/files", user, prefix="src/")
    assert [f["path"] for f in body["data"]["items"]] == ["src/a.py", "src/b.py"]

    status, body = await get(system, "/files/history", user, path="src/a.py")
    assert status == 200, body
    assert [e["kind"] for e in body["data"]["items"]] == ["created", "modified", "moved"]
    status, body = await get(system, "/files/history", user, path="src/b.py")
    assert [e["kind"] for e in body["data"]["items"]] == ["moved"]

    # Filters: kind, actor, session, path prefix, time range (since inclusive, until exclusive).
    assert [e["kind"] for e in await all_events(system, user, kind="deleted")] == ["deleted"]
    assert len(await all_events(system, user, actor="claude-code")) == 2
    assert [e["event_id"] for e in await all_events(system, user, session_id=session_id)] == [events[0]["event_id"]]
    assert len(await all_events(system, user, path_prefix="docs/")) == 2
    window = await all_events(
        system,
        user,
        since=(BASE_TIME + timedelta(seconds=2)).isoformat(),
        until=(BASE_TIME + timedelta(seconds=4)).isoformat(),
    )
    assert [e["kind"] for e in window] == ["modified", "moved"]
    # Pages of one, followed by cursor, give the same order.
    assert [e["event_id"] for e in await all_events(system, user, limit=1)] == [e["event_id"] for e in events]


async def test_a_batch_published_twice_with_fresh_message_ids_is_stored_once(system: Gateway) -> None:
    user = await new_user(system)
    events = [change(f"f{i}.txt", second=i) for i in range(30)]
    nc = await connect(system)
    try:
        await publish(nc, subject_of(user), events)
        await publish(nc, subject_of(user), events)  # inside the duplicate window: JetStream drops these
        await consumed(system, 30)
        # A monitor restarted past the duplicate window re-sends: new Nats-Msg-Ids, the same event ids.
        await publish(nc, subject_of(user), events, msg_ids=False)
        await consumed(system, 60)
    finally:
        await nc.close()
    assert files_ctx(system).stats.duplicates >= 30
    stored = await all_events(system, user)
    assert sorted(e["event_id"] for e in stored) == sorted(e["event_id"] for e in events)
    status, body, _ = await call(system, "GET", "/files", user, limit=100)
    assert all(f["versions"] == 1 for f in body["data"]["items"])


async def test_a_batch_retried_after_an_unknown_commit_result_is_not_duplicated(system: Gateway) -> None:
    """The commit went through but the service could not know (FoundationDB's commit_unknown_result):
    the batch fails, comes back, and the markers written by the first commit skip every event."""
    user = await new_user(system)
    ctx = files_ctx(system)
    store = ctx.store
    real_run = store.run
    failed: list[bool] = []

    async def commit_then_fail(fn):  # type: ignore[no-untyped-def]
        result = await real_run(fn)
        if not failed and ctx.stats.transactions:
            failed.append(True)
            raise RuntimeError("commit_unknown_result")
        return result

    store.run = commit_then_fail  # type: ignore[method-assign]
    try:
        events = [change(f"u{i}.txt", second=i) for i in range(10)]
        nc = await connect(system)
        try:
            await publish(nc, subject_of(user), events)
        finally:
            await nc.close()
        await consumed(system, 10)
    finally:
        store.run = real_run  # type: ignore[method-assign]
    assert failed
    assert len(await all_events(system, user)) == 10
    status, body, _ = await call(system, "GET", "/files", user, limit=100)
    assert all(f["versions"] == 1 for f in body["data"]["items"])


async def test_the_log_keeps_the_change_as_validated_whatever_the_body_carried_besides(system: Gateway) -> None:
    """The log stores the body as received when that is safe: a field the contract does not know, a path
    not in normal form, or a "recorded_at" of the sender's change nothing read back; a body leaving the
    event id or time to their defaults is stored as validated (the defaults are made once)."""
    user = await new_user(system)
    odd = change("./odd//one.txt", second=1) | {"recorded_at": "2000-01-01T00:00:00Z", "unknown": [1, 2]}
    untimed = change("untimed.txt")
    del untimed["occurred_at"]
    nc = await connect(system)
    try:
        await publish(nc, subject_of(user), [odd, untimed])
    finally:
        await nc.close()
    await consumed(system, 2)
    first = {e["event_id"]: e for e in await all_events(system, user)}
    again = {e["event_id"]: e for e in await all_events(system, user)}
    assert first == again  # nothing made up anew on each read
    stored = first[odd["event_id"]]
    assert stored["path"] == "odd/one.txt" and "unknown" not in stored
    assert stored["recorded_at"] > "2026"  # the service's, not the sender's
    assert first[untimed["event_id"]]["occurred_at"] > "2026"  # the service's time of receipt, kept


async def test_poison_messages_are_dead_lettered_and_the_rest_stored(system: Gateway) -> None:
    user = await new_user(system)
    good = [change(f"ok{i}.txt", second=i) for i in range(5)]
    traversal = change("../etc/passwd")
    nc = await connect(system)
    try:
        js = nc.jetstream()
        await publish(nc, subject_of(user), [good[0], good[1], traversal, good[2]])
        await js.publish(subject_of(user), b"{not json", headers={"Nats-Msg-Id": str(uuid.uuid4())})
        # A subject whose workspace is not its user's: nobody's files.
        forged = subjects.file_subject(user.tenant_id, user.id, uuid.uuid4())
        await publish(nc, forged, [change("x.txt")])
        await publish(nc, subject_of(user), good[3:])
    finally:
        await nc.close()
    await consumed(system, 8)

    assert sorted(e["path"] for e in await all_events(system, user)) == sorted(e["path"] for e in good)
    letters = await dead_letters(_admin_url(system))
    assert len(letters) == 3 and files_ctx(system).stats.dead_lettered == 3
    bodies = [body for body, _ in letters]
    assert orjson.dumps(traversal) in bodies and b"{not json" in bodies
    reasons = [headers[api.DEAD_LETTER_REASON_HEADER] for _, headers in letters]
    assert any("path" in r and ".." in r for r in reasons), reasons
    assert any("workspace" in r for r in reasons), reasons
    assert {headers[api.DEAD_LETTER_SUBJECT_HEADER] for _, headers in letters} >= {forged}

    # Termed, not left to come back: nothing is pending or awaiting an ack on the consumer.
    info = await files_ctx(system).js.consumer_info(subjects.FILE_EVENTS_STREAM, DURABLE)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_a_message_that_keeps_failing_is_dead_lettered_after_max_deliver(system: Gateway) -> None:
    user = await new_user(system)
    poisoned = change("boom.txt")
    real_record = recording.record

    def record(tx, items, recorded_at, *args):  # type: ignore[no-untyped-def]
        if any(str(c.event_id) == poisoned["event_id"] for _, c, _ in items):
            raise RuntimeError("a bug this event triggers")
        return real_record(tx, items, recorded_at, *args)

    recording.record = record  # type: ignore[assignment]
    try:
        others = [change(f"fine{i}.txt") for i in range(4)]
        nc = await connect(system)
        try:
            await publish(nc, subject_of(user), [others[0], others[1], poisoned, others[2], others[3]])
        finally:
            await nc.close()
        await consumed(system, 5, timeout=30)
    finally:
        recording.record = real_record  # type: ignore[assignment]
    assert sorted(e["path"] for e in await all_events(system, user)) == sorted(e["path"] for e in others)
    letters = await dead_letters(_admin_url(system))
    assert [orjson.loads(body)["event_id"] for body, _ in letters] == [poisoned["event_id"]]
    assert "failed" in letters[0][1][api.DEAD_LETTER_REASON_HEADER]


async def test_a_store_outage_pauses_ingest_without_losing_or_dead_lettering(system: Gateway) -> None:
    """max_deliver is 3 here: an outage longer than three redeliveries must not spend them all."""
    from shared.store import StoreUnavailable

    user = await new_user(system)
    ctx = files_ctx(system)
    store = ctx.store
    real_run, real_check = store.run, store.check
    down = True

    async def run(fn):  # type: ignore[no-untyped-def]
        if down:
            raise StoreUnavailable("the store is down (test)")
        return await real_run(fn)

    async def check() -> None:
        if down:
            raise StoreUnavailable("the store is down (test)")
        await real_check()

    store.run, store.check = run, check  # type: ignore[method-assign]
    try:
        events = [change(f"outage/{i}.txt", second=i) for i in range(20)]
        nc = await connect(system)
        try:
            await publish(nc, subject_of(user), events)
        finally:
            await nc.close()
        await asyncio.sleep(2.0)  # twenty retry delays of the test settings
        assert ctx.stats.stored == 0 and ctx.stats.dead_lettered == 0
        down = False
        await consumed(system, 20)
    finally:
        store.run, store.check = real_run, real_check  # type: ignore[method-assign]
    assert ctx.stats.dead_lettered == 0
    assert len(await all_events(system, user)) == 20


def _admin_url(system: Gateway) -> str:
    """Dead letters are read as test-admin (no process identity reads another's stream)."""
    assert system.nats is not None
    return system.nats.url
