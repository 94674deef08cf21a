"""What every auth use case works with: the collaborators, and the steps they all share (events in
the transaction's outbox, revoking families, issuing tokens, publishing after commit)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from contracts import auth as api
from contracts.envelope import ErrorCode
from contracts.events import Actor, Event
from contracts.identity import BusRequest, Caller
from services.auth import repository as repo
from services.auth.device_tokens import DeviceTokens
from services.auth.keyring import KeyRing
from services.auth.keys import AccessClaims, sign_access_token
from services.auth.lockout import LockoutPolicy, WindowCount
from services.auth.passwords import PasswordHashing
from services.auth.settings import AuthSettings
from shared.errors import ServiceError, caller_of
from shared.outbox import Outbox, Staged
from shared.store import Store, Transaction
from shared.telemetry import current_trace_id

T = TypeVar("T")

INVALID_CREDENTIALS = ServiceError(ErrorCode.INVALID_CREDENTIALS, "email or password is wrong")


def require_admin(message: BusRequest) -> Caller:
    caller = caller_of(message)
    if not caller.is_admin:
        raise ServiceError(ErrorCode.FORBIDDEN, "this operation is for tenant admins")
    return caller


def policy_from(settings: AuthSettings) -> LockoutPolicy:
    return LockoutPolicy(
        threshold=settings.lockout_threshold,
        base_seconds=settings.lockout_base_seconds,
        max_seconds=settings.lockout_max_seconds,
        ip_limit=settings.ip_failure_limit,
        ip_window_seconds=settings.ip_failure_window_seconds,
        lease_seconds=settings.attempt_lease_seconds,
        failure_reset_seconds=settings.lockout_failure_reset_seconds,
        lock_history_reset_seconds=settings.lockout_history_reset_seconds,
    )


@dataclass
class AuthContext:
    store: Store
    outbox: Outbox
    hashing: PasswordHashing
    keyring: KeyRing
    settings: AuthSettings
    device_tokens: DeviceTokens
    lockout: LockoutPolicy = field(init=False)
    signups: WindowCount = field(default_factory=WindowCount)  # sign-ups of this replica, this minute

    def __post_init__(self) -> None:
        self.lockout = policy_from(self.settings)

    @property
    def access_ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.access_token_ttl_seconds)

    @property
    def idle_ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.refresh_idle_ttl_seconds)

    @property
    def absolute_ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.refresh_absolute_ttl_seconds)

    # Events.
    def event(
        self,
        type_: str,
        message: BusRequest,
        *,
        tenant_id: uuid.UUID | None,
        user_id: uuid.UUID | None,
        outcome: Literal["success", "failure"] = "success",
        data: dict[str, Any] | None = None,
        actor: Actor | None = None,
    ) -> Event:
        """An event about ``user_id``; by default that user is also the actor (they did it)."""
        return Event(
            type=type_,
            tenant_id=tenant_id,
            actor=actor
            or Actor(kind="human", user_id=user_id, ip=message.client.ip, user_agent=message.client.user_agent),
            target=f"user:{user_id}" if user_id else None,
            outcome=outcome,
            trace_id=current_trace_id(),
            data=data or {},
        )

    def stage(self, tx: Transaction, type_: str, message: BusRequest, **fields: Any) -> None:
        """Stage an event in the outbox of this transaction."""
        self.outbox.stage(tx, self.event(type_, message, **fields))

    async def transact(self, fn: Callable[[Transaction], T]) -> tuple[T, Staged]:
        """Run a transaction that stages events; its result and what it staged, for ``publish_staged``."""
        return await self.outbox.transact(fn)

    async def publish_staged(self, staged: Staged | None = None) -> None:
        """After a commit: publish what it staged (from memory; without ``staged``, whatever the
        outbox holds), briefly. The change is committed whatever happens here; what is not out
        within the bound, the outbox's loop delivers."""
        await self.outbox.publish_soon(self.settings.publish_after_commit_seconds, staged)

    # Families.
    def revoke(
        self,
        tx: Transaction,
        sessions: list[repo.AuthSessionRecord],
        reason: str,
        message: BusRequest,
        now: datetime,
        actor: Actor | None = None,
    ) -> api.Revoked:
        revoked = [s for s in sessions if s.revoked_at is None]
        for session in revoked:
            session.revoked_at = now
            session.revoked_reason = reason
            repo.put_session(tx, session)
        until = now + self.access_ttl + timedelta(seconds=self.settings.jwt_leeway_seconds)
        if revoked:
            first = revoked[0]
            data = api.SessionsRevokedData(
                user_id=first.user_id, session_ids=[s.id for s in revoked], reason=reason, until=until
            )
            self.stage(
                tx,
                api.SESSION_REVOKED,
                message,
                tenant_id=first.tenant_id,
                user_id=first.user_id,
                data=data.model_dump(mode="json"),
                actor=actor,
            )
        return api.Revoked(session_ids=[s.id for s in revoked], until=until)

    # Tokens.
    async def issue(
        self, user: repo.UserRecord, session: repo.AuthSessionRecord, refresh_token: str, issued_at: datetime
    ) -> api.TokenPair:
        """Sign an access token dated by the transaction that created or rotated the family, so a
        revocation committed after it always outlives the token."""
        key = await self.keyring.active()
        claims = AccessClaims(user_id=user.id, tenant_id=user.tenant_id, session_id=session.id, roles=user.roles)
        access = sign_access_token(
            key,
            claims,
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            now=issued_at,
            ttl=self.access_ttl,
        )
        return api.TokenPair(
            access_token=access,
            refresh_token=refresh_token,
            expires_in=int(self.access_ttl.total_seconds()),
            user=user.public(),
        )


def anonymous(message: BusRequest) -> Actor:
    """The unidentified party of an unauthenticated request (a failed login, a reused refresh token):
    never the account it targets."""
    return Actor(kind="human", user_id=None, ip=message.client.ip, user_agent=message.client.user_agent)


def platform() -> Actor:
    return Actor(kind="system")
