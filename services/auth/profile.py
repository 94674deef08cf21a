"""The caller's own user and tenant."""

from __future__ import annotations

from contracts import auth as api
from contracts.envelope import ErrorCode
from contracts.identity import Caller
from services.auth import repository as repo
from services.auth.context import AuthContext
from services.auth.keys import utcnow
from shared.errors import ServiceError, caller_of
from shared.store import Transaction


def _own(tx: Transaction, caller: Caller) -> repo.UserRecord:
    user = repo.get_user(tx, caller.user_id)
    if user is None or user.tenant_id != caller.tenant_id:
        raise ServiceError(ErrorCode.NOT_FOUND, "user not found")
    return user


async def get_me(ctx: AuthContext, message: api.GetMe) -> api.UserPublic:
    """The caller's user (never its password hash)."""
    caller = caller_of(message)
    return (await ctx.store.run(lambda tx: _own(tx, caller))).public()


async def update_me(ctx: AuthContext, message: api.UpdateMe) -> api.UserPublic:
    """Change the caller's display name."""
    caller = caller_of(message)

    def update(tx: Transaction) -> repo.UserRecord:
        user = _own(tx, caller)
        user.name = message.name
        user.updated_at = utcnow()
        repo.put_user(tx, user)
        return user

    return (await ctx.store.run(update)).public()


async def get_tenant(ctx: AuthContext, message: api.GetTenant) -> api.TenantPublic:
    """The caller's tenant."""
    caller = caller_of(message)
    tenant = await ctx.store.run(lambda tx: repo.get_tenant(tx, caller.tenant_id))
    if tenant is None:
        raise ServiceError(ErrorCode.NOT_FOUND, "tenant not found")
    return tenant.public()
