"""Taking people out: an admin removes one user of their tenant, or deletes the tenant with every user.

A removed user is gone from the store in the transaction that removes them (record, email, place in
the tenant, every device family with its refresh tokens), and every device is revoked through the
same path as a logout, so their access tokens stop at every gateway at once. The events that say so
(``auth.user_removed``, ``auth.tenant_deleted``) leave through the outbox: the session service ends
their sessions, provisioning deprovisions their workspaces.

A tenant is deleted a batch of users per transaction, so a tenant of any size stays inside the
store's limits (5 s, 10 MB per transaction, 100 kB per value: the event naming a batch's users is one
value in the outbox). The admin deleting it goes last, with the tenant itself: a deletion cut short
(a crash, a timeout) leaves a smaller tenant that the same admin can delete again, never a tenant
without anyone able to finish the job.
"""

from __future__ import annotations

from uuid import UUID

from contracts import auth as api
from contracts.envelope import ErrorCode
from contracts.events import Actor
from contracts.identity import BusRequest, Caller
from services.auth import repository as repo
from services.auth.context import AuthContext, require_admin
from services.auth.keys import utcnow
from shared.errors import ServiceError
from shared.store import Transaction

# The reply lists revoked sessions so the answering gateway denies them before it answers; past this
# many the rest reach it (and every other gateway) through the revocation stream alone.
REPLY_SESSION_IDS_MAX = 10_000


def _admin_actor(message: BusRequest, caller: Caller) -> Actor:
    return Actor(kind="human", user_id=caller.user_id, ip=message.client.ip, user_agent=message.client.user_agent)


def _acting_admin(tx: Transaction, caller: Caller) -> repo.UserRecord:
    """The caller as the store has them now (the token may be older than a removal or a deletion)."""
    admin = repo.get_user(tx, caller.user_id)
    if admin is None or admin.tenant_id != caller.tenant_id or not admin.is_active:
        raise ServiceError(ErrorCode.UNAUTHORIZED, "the caller's account no longer exists")
    if "admin" not in admin.roles:
        raise ServiceError(ErrorCode.FORBIDDEN, "this operation is for tenant admins")
    return admin


def _remove(
    ctx: AuthContext, tx: Transaction, message: BusRequest, user: repo.UserRecord, reason: str, actor: Actor
) -> api.Revoked:
    """Revoke every device of ``user`` (their tokens are denied at the gateways), then forget them."""
    sessions = repo.user_sessions(tx, user.id)
    revoked = ctx.revoke(tx, sessions, reason, message, utcnow(), actor=actor)
    for session in sessions:
        repo.purge_session(tx, session)
    repo.delete_user(tx, user)
    return revoked


async def remove_tenant_user(ctx: AuthContext, message: api.RemoveTenantUser) -> api.Revoked:
    """Remove a user of the caller's tenant (admins only; never the caller: another admin can, or the
    tenant is deleted). Another tenant's user is not found. The caller is an admin who stays, so the
    tenant always keeps one."""
    caller = require_admin(message)
    if message.user_id == caller.user_id:
        raise ServiceError(
            ErrorCode.CANNOT_REMOVE_SELF,
            "an admin cannot remove themself: another admin can, or the tenant can be deleted",
        )
    actor = _admin_actor(message, caller)

    def remove(tx: Transaction) -> api.Revoked:
        _acting_admin(tx, caller)
        user = repo.get_user(tx, message.user_id)
        if user is None or user.tenant_id != caller.tenant_id:
            raise ServiceError(ErrorCode.NOT_FOUND, "user not found")
        revoked = _remove(ctx, tx, message, user, "user_removed", actor)
        data = api.UserRemovedData(user_id=user.id, removed_by=caller.user_id)
        ctx.stage(
            tx,
            api.USER_REMOVED,
            message,
            tenant_id=user.tenant_id,
            user_id=user.id,
            data=data.model_dump(mode="json"),
            actor=actor,
        )
        return revoked

    revoked, staged = await ctx.transact(remove)
    await ctx.publish_staged(staged)
    return revoked


async def delete_tenant(ctx: AuthContext, message: api.DeleteTenant) -> api.Revoked:
    """Delete the caller's tenant and every user of it (admins only), a batch at a time."""
    caller = require_admin(message)
    actor = _admin_actor(message, caller)
    batch_size = ctx.settings.tenant_deletion_batch_users
    session_ids: list[UUID] = []
    until = utcnow()
    finished = False
    while not finished:

        def one_batch(tx: Transaction) -> tuple[list[api.Revoked], bool]:
            admin = _acting_admin(tx, caller)
            tenant = repo.get_tenant(tx, caller.tenant_id)
            if tenant is None:
                raise ServiceError(ErrorCode.NOT_FOUND, "tenant not found")
            rows = repo.tenant_user_index(tx, tenant.id, batch_size + 1)
            others = [(key, user_id) for key, user_id in rows if user_id != admin.id][:batch_size]
            last = len(rows) <= batch_size  # every remaining member is in this read
            revoked, deleted = [], []
            for key, user_id in others:
                user = repo.get_user(tx, user_id)
                if user is None or user.tenant_id != tenant.id:
                    tx.clear(key)  # an index entry with nobody behind it
                    continue
                revoked.append(_remove(ctx, tx, message, user, "tenant_deleted", actor))
                deleted.append(user.id)
            if last:
                revoked.append(_remove(ctx, tx, message, admin, "tenant_deleted", actor))
                deleted.append(admin.id)
                repo.delete_tenant(tx, tenant.id)
            event = ctx.event(
                api.TENANT_DELETED,
                message,
                tenant_id=tenant.id,
                user_id=None,
                data=api.TenantDeletedData(user_ids=deleted, complete=last).model_dump(mode="json"),
                actor=actor,
            )
            event.target = f"tenant:{tenant.id}"
            ctx.outbox.stage(tx, event)
            return revoked, last

        (revoked, finished), staged = await ctx.transact(one_batch)
        await ctx.publish_staged(staged)
        for each in revoked:
            session_ids.extend(each.session_ids)
            until = max(until, each.until)
    return api.Revoked(session_ids=session_ids[:REPLY_SESSION_IDS_MAX], until=until)
