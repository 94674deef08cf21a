"""Checking a password: login (a new device family) and password change (every other device revoked).

The transaction that acts on a correct password re-reads the user and proceeds only if the
credentials it was checked against are still the current ones: a login racing a password change
or a deactivation loses.
"""

from __future__ import annotations

import uuid

from contracts import auth as api
from contracts.envelope import ErrorCode
from services.auth import repository as repo
from services.auth.attempts import leased
from services.auth.context import INVALID_CREDENTIALS, AuthContext
from services.auth.keys import utcnow
from services.auth.refresh_tokens import new_refresh_token, token_hash
from shared.errors import ServiceError, caller_of
from shared.store import Transaction


def _still_current(tx: Transaction, checked: repo.UserRecord) -> repo.UserRecord | None:
    current = repo.get_user(tx, checked.id)
    if current is None or not current.is_active or current.credentials_version != checked.credentials_version:
        return None
    return current


async def login(ctx: AuthContext, message: api.Login) -> api.TokenPair:
    """Check the password and open a new device family; hand out a device token for the next login."""
    known_device_of = await ctx.device_tokens.holder(message.device_token)
    address = message.client.ip or "unknown"
    async with leased(ctx, address, lambda tx: repo.user_by_email(tx, message.email), known_device_of) as attempt:
        user = attempt.user
        if not await ctx.hashing.verify(user.password_hash if user else None, message.password):
            await attempt.fail(message, user.tenant_id if user else None, "invalid_credentials")
            raise INVALID_CREDENTIALS
        assert user is not None
        new_hash = (
            await ctx.hashing.hash(message.password, for_login=True)
            if ctx.hashing.needs_rehash(user.password_hash)
            else None
        )
        now = utcnow()
        session = repo.AuthSessionRecord(
            id=uuid.uuid4(),
            user_id=user.id,
            tenant_id=user.tenant_id,
            device_name=message.device_name,
            ip=message.client.ip,
            user_agent=message.client.user_agent,
            created_at=now,
            last_used_at=now,
            idle_expires_at=min(now + ctx.idle_ttl, now + ctx.absolute_ttl),
            expires_at=now + ctx.absolute_ttl,
        )
        refresh_token = new_refresh_token()
        # Before the commit: a login that cannot hand out its device token opens no family.
        device_token = await ctx.device_tokens.issue(user.id, now)

        def create(tx: Transaction) -> repo.UserRecord | None:
            current = _still_current(tx, user)
            if current is None:
                attempt.release(tx)
                return None
            attempt.settle_success(tx)
            current.last_login_at = now
            if new_hash is not None:
                current.password_hash = new_hash
            repo.put_user(tx, current)
            for old in repo.finished_sessions(tx, user.id, now):
                repo.purge_session(tx, old)
            repo.put_session(tx, session)
            repo.put_refresh(
                tx,
                token_hash(refresh_token),
                repo.RefreshRecord(session_id=session.id, generation=0, expires_at=session.idle_expires_at),
            )
            ctx.stage(
                tx,
                api.LOGIN_SUCCEEDED,
                message,
                tenant_id=user.tenant_id,
                user_id=user.id,
                data={"session_id": str(session.id), "device_name": session.device_name},
            )
            return current

        current, staged = await ctx.transact(create)
        attempt.settled = True
    if current is None:
        raise INVALID_CREDENTIALS
    await ctx.publish_staged(staged)
    pair = await ctx.issue(current, session, refresh_token, now)
    pair.device_token = device_token
    return pair


async def change_password(ctx: AuthContext, message: api.ChangePassword) -> api.Revoked:
    """Replace the password (the current one is checked against the lockout like a login) and
    revoke every other device."""
    caller = caller_of(message)

    def own_user(tx: Transaction) -> repo.UserRecord | None:
        user = repo.get_user(tx, caller.user_id)
        return user if user is not None and user.tenant_id == caller.tenant_id else None

    # Guessing the current password with a stolen access token meets the login lockout too.
    async with leased(ctx, None, own_user) as attempt:
        user = attempt.user
        if user is None:
            raise ServiceError(ErrorCode.NOT_FOUND, "user not found")
        if not await ctx.hashing.verify(user.password_hash, message.current_password):
            await attempt.fail(message, user.tenant_id, "wrong_current_password")
            raise INVALID_CREDENTIALS
        new_hash = await ctx.hashing.hash(message.new_password)

        def change(tx: Transaction) -> api.Revoked | None:
            current = _still_current(tx, user)
            if current is None:
                attempt.release(tx)
                return None
            now = utcnow()
            attempt.settle_success(tx)
            current.password_hash = new_hash
            current.credentials_version += 1
            current.updated_at = now
            repo.put_user(tx, current)
            others = [s for s in repo.user_sessions(tx, caller.user_id) if s.id != caller.session_id]
            ctx.stage(
                tx,
                api.PASSWORD_CHANGED,
                message,
                tenant_id=caller.tenant_id,
                user_id=caller.user_id,
                data={"revoked_sessions": sum(1 for s in others if s.revoked_at is None)},
            )
            return ctx.revoke(tx, others, "password_changed", message, now)

        revoked, staged = await ctx.transact(change)
        attempt.settled = True
    if revoked is None:
        raise INVALID_CREDENTIALS
    await ctx.publish_staged(staged)
    return revoked
