"""The use cases of workspace sessions: each reads and changes one session in one transaction, with
its events staged in the same transaction and published after the commit, from memory (the outbox
reads rows back only for what a request could not send)."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from uuid import UUID

from contracts import session as api
from contracts.envelope import ErrorCode
from contracts.events import Actor
from contracts.identity import Caller
from services.session import repository as repo
from services.session import rules
from services.session.context import SessionContext, caller_actor, session_event, utcnow
from shared.dispatch import Encoded
from shared.errors import ServiceError, caller_of
from shared.store import Transaction

# Index entries one list request reads at most: a status filter that matches few sessions returns a
# short page with a cursor instead of reading every session the user ever had.
LIST_MAX_SCAN = 2000


def _owned(tx: Transaction, caller: Caller, session_id: UUID) -> repo.SessionRecord:
    return rules.owned(repo.get(tx, session_id), caller)


def _ensure_quota(ctx: SessionContext, tx: Transaction, caller: Caller) -> None:
    maximum = ctx.settings.max_active_sessions_per_user
    rules.check_quota(repo.count_active(tx, caller.tenant_id, caller.user_id, maximum), maximum)


async def create(ctx: SessionContext, message: api.CreateSession) -> api.Session:
    """Open a new active session for the caller (counts toward the quota). Committed together with
    the creates that arrive meanwhile (``creates.CreateBatcher``): one transaction for many."""
    caller = caller_of(message)
    record = rules.new_session(
        repo.SessionRecord, caller, name=message.name, workspace_path=message.workspace_path, now=utcnow()
    )
    await ctx.creates.create(record, session_event(api.SESSION_CREATED, record, caller_actor(message)))
    return record.public()


async def get(ctx: SessionContext, message: api.GetSession) -> Encoded:
    """One of the caller's sessions (an ``api.Session``, encoded once per stored version)."""
    caller = caller_of(message)

    def read(tx: Transaction) -> Encoded:
        found = repo.get_public(tx, message.session_id)
        if found is None:
            raise rules.not_found()
        rules.owned(found[0], caller)
        return found[1]

    return await ctx.store.run(read)


async def list_sessions(ctx: SessionContext, message: api.ListSessions) -> api.SessionPage:
    """A user's sessions, most recently accessed first. The cursor keeps the order of the first page:
    a session accessed meanwhile is neither repeated nor skipped by the next pages."""
    caller = caller_of(message)
    user_id = message.user_id or caller.user_id
    if user_id != caller.user_id and not caller.is_admin:
        raise ServiceError(ErrorCode.FORBIDDEN, "only tenant admins may list another user's sessions")
    now_us = repo.micros(utcnow())
    snapshot_us, after = now_us, None
    if message.cursor is not None:
        ttl = timedelta(seconds=ctx.settings.list_cursor_ttl_seconds)
        snapshot_us, position = rules.decode_list_cursor(message.cursor, now_us=now_us, ttl=ttl)
        after = repo.Position(*position)

    def read(tx: Transaction) -> tuple[list[repo.SessionRecord], repo.Position | None]:
        return repo.page(
            tx,
            caller.tenant_id,  # never another tenant's: an admin names users of their own tenant only
            user_id,
            snapshot_us=snapshot_us,
            after=after,
            status=message.status,
            limit=message.limit,
            max_scan=LIST_MAX_SCAN,
        )

    records, next_position = await ctx.store.run(read)
    return api.SessionPage(
        items=[r.public() for r in records],
        next_cursor=rules.encode_list_cursor(snapshot_us, next_position) if next_position is not None else None,
    )


async def update(ctx: SessionContext, message: api.UpdateSession) -> api.Session:
    """Rename the session or move it along its state machine, if its version is the one If-Match names."""
    caller = caller_of(message)
    actor = caller_actor(message)

    def apply(tx: Transaction) -> repo.SessionRecord:
        before = _owned(tx, caller, message.session_id)
        rules.check_precondition(before, message.if_match)
        after = rules.updated(before, name=message.name, status=message.status, now=utcnow())
        if after is None:
            return before
        if after.status == "active" and before.status != "active":
            _ensure_quota(ctx, tx, caller)
        repo.save(tx, before, after)
        ctx.stage(tx, api.SESSION_UPDATED, after, actor)
        return after

    # A resume reads the quota counter: queued per user like forks (see ``SessionContext.quota_lock``).
    resuming = message.status == "active"
    async with ctx.quota_lock(caller.tenant_id, caller.user_id) if resuming else contextlib.nullcontext():
        record, staged = await ctx.transact(apply)
    await ctx.publish_staged(staged)
    return record.public()


async def delete(ctx: SessionContext, message: api.DeleteSession) -> None:
    """Forget the session; ``session.deleted`` carries its last state."""
    caller = caller_of(message)
    actor = caller_actor(message)

    def remove(tx: Transaction) -> None:
        record = _owned(tx, caller, message.session_id)
        rules.check_precondition(record, message.if_match)
        repo.remove(tx, record)
        ctx.stage(tx, api.SESSION_DELETED, record, actor)

    _, staged = await ctx.transact(remove)
    await ctx.publish_staged(staged)


async def fork(ctx: SessionContext, message: api.ForkSession) -> api.Session:
    """A new active session branching from one of the caller's (in any state; forks of forks too)."""
    caller = caller_of(message)
    actor = caller_actor(message)

    def insert(tx: Transaction) -> repo.SessionRecord:
        parent = _owned(tx, caller, message.session_id)
        _ensure_quota(ctx, tx, caller)
        child = rules.new_session(
            repo.SessionRecord,
            caller,
            name=message.name or rules.fork_name(parent.name),
            workspace_path=None,
            now=utcnow(),
            parent=parent,
        )
        repo.insert(tx, child)
        ctx.stage(tx, api.SESSION_FORKED, child, actor)
        return child

    async with ctx.quota_lock(caller.tenant_id, caller.user_id):
        record, staged = await ctx.transact(insert)
    await ctx.publish_staged(staged)
    return record.public()


async def touch(ctx: SessionContext, message: api.TouchSession) -> api.Session:
    """Record an access: the session moves to the front of the list and the idle sweep waits again."""
    caller = caller_of(message)

    def apply(tx: Transaction) -> repo.SessionRecord:
        before = _owned(tx, caller, message.session_id)
        after = rules.touched(before, utcnow())
        repo.save(tx, before, after)
        return after

    return (await ctx.store.run(apply)).public()


def system_change(
    ctx: SessionContext, tx: Transaction, before: repo.SessionRecord, after: repo.SessionRecord, actor: Actor
) -> None:
    """A change the platform makes (idle suspension, termination): saved and announced like a client's."""
    repo.save(tx, before, after)
    ctx.stage(tx, api.SESSION_UPDATED, after, actor)
