"""The caller's own user and tenant."""

from __future__ import annotations

from typing import TypeVar
from uuid import UUID

from contracts import auth as api
from contracts.envelope import ErrorCode
from contracts.identity import Caller
from services.auth import repository as repo
from services.auth.context import AuthContext
from services.auth.keys import utcnow
from shared.dispatch import Encoded
from shared.errors import ServiceError, caller_of
from shared.store import Transaction

U = TypeVar("U")


def _in_tenant(found: tuple[UUID, U] | None, caller: Caller) -> U:
    """What was found for the caller, if it is of the caller's tenant; anything else is not found."""
    if found is None or found[0] != caller.tenant_id:
        raise ServiceError(ErrorCode.NOT_FOUND, "user not found")
    return found[1]


def _own(tx: Transaction, caller: Caller) -> repo.UserRecord:
    user = repo.get_user(tx, caller.user_id)
    return _in_tenant(None if user is None else (user.tenant_id, user), caller)


async def get_me(ctx: AuthContext, message: api.GetMe) -> Encoded:
    """The caller's user (a ``UserPublic``: never its password hash)."""
    caller = caller_of(message)

    def read(tx: Transaction) -> Encoded:
        return _in_tenant(repo.get_public_user(tx, caller.user_id), caller)

    return await ctx.store.run(read)


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
