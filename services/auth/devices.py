"""A user's devices (auth sessions): list them, sign one out, this one, or all."""

from __future__ import annotations

from collections.abc import Callable

from contracts import auth as api
from contracts.envelope import ErrorCode
from contracts.identity import BusRequest, Caller
from services.auth import repository as repo
from services.auth.context import AuthContext
from services.auth.keys import utcnow
from shared.cursors import decode_offset, encode_cursor
from shared.errors import ServiceError, caller_of
from shared.store import Transaction

Choose = Callable[[repo.AuthSessionRecord, Caller], bool]


async def _revoke_where(
    ctx: AuthContext, message: BusRequest, reason: str, event_type: str | None, choose: Choose
) -> api.Revoked:
    caller = caller_of(message)

    def revoke(tx: Transaction) -> api.Revoked:
        now = utcnow()
        sessions = [s for s in repo.user_sessions(tx, caller.user_id) if choose(s, caller)]
        if event_type is not None:
            ctx.stage(
                tx,
                event_type,
                message,
                tenant_id=caller.tenant_id,
                user_id=caller.user_id,
                data=api.LogoutData(
                    user_id=caller.user_id,
                    session_ids=[s.id for s in sessions if s.revoked_at is None],
                    reason=reason,
                ).model_dump(mode="json"),
            )
        return ctx.revoke(tx, sessions, reason, message, now)

    revoked = await ctx.store.run(revoke)
    await ctx.publish_staged()
    return revoked


async def logout(ctx: AuthContext, message: api.Logout) -> api.Revoked:
    """Sign out the caller's device: its refresh family and access tokens stop working."""
    return await _revoke_where(ctx, message, "logout", api.LOGOUT_EVENT, lambda s, c: s.id == c.session_id)


async def logout_all(ctx: AuthContext, message: api.LogoutAll) -> api.Revoked:
    """Sign out every device of the caller."""
    return await _revoke_where(ctx, message, "logout_all", api.LOGOUT_EVENT, lambda s, c: True)


async def revoke_device(ctx: AuthContext, message: api.RevokeDevice) -> api.Revoked:
    """Sign out one of the caller's own devices; anyone else's is not found."""
    caller = caller_of(message)
    owned = await ctx.store.run(lambda tx: repo.get_session(tx, message.device_id))
    if owned is None or owned.user_id != caller.user_id or owned.tenant_id != caller.tenant_id:
        raise ServiceError(ErrorCode.NOT_FOUND, "device not found")
    return await _revoke_where(ctx, message, "device_revoked", None, lambda s, c: s.id == message.device_id)


async def list_devices(ctx: AuthContext, message: api.ListDevices) -> api.DevicePage:
    """Active devices, most recently used first; the cursor is a position in that order."""
    caller = caller_of(message)
    now = utcnow()
    start = decode_offset(message.cursor) if message.cursor else 0
    sessions = await ctx.store.run(lambda tx: repo.user_sessions(tx, caller.user_id))
    active = sorted((s for s in sessions if s.active(now)), key=lambda s: s.last_used_at, reverse=True)
    page = active[start : start + message.limit]
    end = start + len(page)
    return api.DevicePage(
        items=[s.device(caller.session_id) for s in page],
        next_cursor=encode_cursor(f"offset:{end}".encode()) if end < len(active) else None,
    )
