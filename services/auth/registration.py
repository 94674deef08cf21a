"""New users: self-registration (a new tenant, its admin) and members added by a tenant admin.

Each costs an Argon2id hash, so sign-ups are limited per address (in the store, shared by every
replica) and overall (per replica), and may not use the hash capacity kept for logins.
"""

from __future__ import annotations

import math
import time
import uuid

from contracts import auth as api
from contracts.envelope import ErrorCode
from services.auth import lockout
from services.auth import repository as repo
from services.auth.context import AuthContext, require_admin
from services.auth.keys import utcnow
from shared.cursors import decode_cursor, encode_cursor
from shared.errors import ServiceError
from shared.store import Transaction

GLOBAL_WINDOW_SECONDS = 60.0


def _too_many(message: str, wait: float) -> ServiceError:
    return ServiceError(ErrorCode.RATE_LIMITED, message, retry_after=math.ceil(wait))


async def _admit_signup(ctx: AuthContext, address: str) -> None:
    """Raise RATE_LIMITED unless one more sign-up fits every limit; count it if it does."""
    ctx.hashing.ensure_capacity(for_login=False)
    settings = ctx.settings
    now = time.time()
    wait = lockout.window_remaining(ctx.signups, now, settings.register_global_limit, GLOBAL_WINDOW_SECONDS)
    if wait > 0:
        raise _too_many("too many sign-ups right now; retry shortly", wait)

    def count(tx: Transaction) -> float:
        state = repo.get_register_rate(tx, address)
        window = settings.register_address_window_seconds
        remaining = lockout.window_remaining(state, now, settings.register_address_limit, window)
        if remaining == 0:
            repo.put_register_rate(tx, address, lockout.count_in_window(state, now, window))
        return remaining

    wait = await ctx.store.run(count)
    if wait > 0:
        raise _too_many("too many sign-ups from this address", wait)
    ctx.signups = lockout.count_in_window(ctx.signups, now, GLOBAL_WINDOW_SECONDS)


async def _create_user(
    ctx: AuthContext, message: api.Register | api.AddTenantUser, tenant: repo.TenantRecord, role: str, new_tenant: bool
) -> repo.UserRecord:
    existing = await ctx.store.run(lambda tx: tx.get(repo.EMAIL.pack((message.email,))))
    if existing is not None:
        raise ServiceError(ErrorCode.EMAIL_TAKEN, "this email is already registered")
    await _admit_signup(ctx, message.client.ip or "unknown")
    password_hash = await ctx.hashing.hash(message.password)
    now = utcnow()
    user = repo.UserRecord(
        id=uuid.uuid4(),
        tenant_id=tenant.id,
        email=message.email,
        name=message.name,
        roles=[role],
        password_hash=password_hash,
        created_at=now,
        updated_at=now,
    )
    event = ctx.event(
        api.USER_REGISTERED,
        message,
        tenant_id=tenant.id,
        user_id=message.caller.user_id if message.caller else user.id,
        data={
            "user_id": str(user.id),
            "email": user.email,
            "tenant_id": str(tenant.id),
            "roles": user.roles,
            "new_tenant": new_tenant,
        },
    )
    event.target = f"user:{user.id}"

    def create(tx: Transaction) -> None:
        if new_tenant:
            repo.put_tenant(tx, tenant)
        elif repo.get_tenant(tx, tenant.id) is None:
            raise ServiceError(ErrorCode.NOT_FOUND, "tenant not found")  # deleted since it was read
        repo.insert_user(tx, user)
        ctx.outbox.stage(tx, event)

    await ctx.store.run(create)
    await ctx.publish_staged()
    return user


async def register(ctx: AuthContext, message: api.Register) -> api.Registered:
    """Create a tenant and its first user, who is its admin."""
    tenant = repo.TenantRecord(
        id=uuid.uuid4(), name=message.tenant_name or message.name or message.email, created_at=utcnow()
    )
    user = await _create_user(ctx, message, tenant, "admin", new_tenant=True)
    return api.Registered(user=user.public(), tenant=tenant.public())


async def add_tenant_user(ctx: AuthContext, message: api.AddTenantUser) -> api.UserPublic:
    """Add a member (or admin) to the caller's tenant (admins only)."""
    caller = require_admin(message)
    tenant = await ctx.store.run(lambda tx: repo.get_tenant(tx, caller.tenant_id))
    if tenant is None:
        raise ServiceError(ErrorCode.NOT_FOUND, "tenant not found")
    user = await _create_user(ctx, message, tenant, message.role, new_tenant=False)
    return user.public()


async def list_tenant_users(ctx: AuthContext, message: api.ListTenantUsers) -> api.UserPage:
    """The members of the caller's tenant, oldest first (admins only)."""
    caller = require_admin(message)
    space = repo.TENANT_USER[str(caller.tenant_id)]
    after = decode_cursor(message.cursor, space.key()) if message.cursor else None
    users, last = await ctx.store.run(lambda tx: repo.tenant_users(tx, caller.tenant_id, after, message.limit))
    return api.UserPage(items=[u.public() for u in users], next_cursor=encode_cursor(last) if last else None)
