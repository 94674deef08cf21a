"""Refresh-token rotation: each token is spent once; presenting a spent one is reuse and revokes
that device's whole family (never the user's other devices)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from contracts import auth as api
from contracts.envelope import ErrorCode
from services.auth import repository as repo
from services.auth.context import AuthContext, anonymous
from services.auth.keys import utcnow
from services.auth.refresh_tokens import new_refresh_token, token_hash
from shared.errors import ServiceError
from shared.store import Transaction


@dataclass
class _Rotation:
    outcome: Literal["rotated", "reused", "invalid"]
    now: datetime
    session: repo.AuthSessionRecord | None = None
    user: repo.UserRecord | None = None
    refresh_token: str | None = None


async def refresh(ctx: AuthContext, message: api.Refresh) -> api.TokenPair:
    """Spend a refresh token for a new pair."""
    digest = token_hash(message.refresh_token)

    def rotate(tx: Transaction) -> _Rotation:
        now = utcnow()
        record = repo.get_refresh(tx, digest)
        session = repo.get_session(tx, record.session_id) if record else None
        if record is None or session is None:
            return _Rotation("invalid", now)
        if record.spent_at is not None:
            if session.revoked_at is None:
                # Whoever presents a spent token may be the thief: they are the actor, the owner the target.
                ctx.stage(
                    tx,
                    api.REFRESH_TOKEN_REUSED,
                    message,
                    tenant_id=session.tenant_id,
                    user_id=session.user_id,
                    outcome="failure",
                    data={"session_id": str(session.id), "generation": record.generation},
                    actor=anonymous(message),
                )
                ctx.revoke(tx, [session], "refresh_token_reused", message, now, actor=anonymous(message))
            return _Rotation("reused", now, session)
        user = repo.get_user(tx, session.user_id)
        if not session.active(now) or now >= record.expires_at or user is None or not user.is_active:
            return _Rotation("invalid", now)
        record.spent_at = now
        repo.put_refresh(tx, digest, record)
        successor = new_refresh_token()
        session.generation += 1
        session.last_used_at = now
        session.idle_expires_at = min(now + ctx.idle_ttl, session.expires_at)
        repo.put_session(tx, session)
        repo.put_refresh(
            tx,
            token_hash(successor),
            repo.RefreshRecord(
                session_id=session.id, generation=session.generation, expires_at=session.idle_expires_at
            ),
        )
        ctx.stage(
            tx,
            api.TOKEN_REFRESHED,
            message,
            tenant_id=session.tenant_id,
            user_id=session.user_id,
            data={"session_id": str(session.id), "generation": session.generation},
        )
        return _Rotation("rotated", now, session, user, successor)

    rotation = await ctx.store.run(rotate)
    await ctx.publish_staged()
    if rotation.outcome == "reused":
        raise ServiceError(
            ErrorCode.REFRESH_TOKEN_REUSED, "this refresh token was already used; the device has been signed out"
        )
    if rotation.outcome == "invalid":
        raise ServiceError(ErrorCode.REFRESH_TOKEN_INVALID, "the refresh token is not valid")
    assert rotation.session
    assert rotation.user
    assert rotation.refresh_token
    return await ctx.issue(rotation.user, rotation.session, rotation.refresh_token, rotation.now)
