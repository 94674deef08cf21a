"""The auth use cases: registration, login, token rotation, devices, profile, tenant members.

Each reads and writes the store in one transaction and stages its events in the outbox of that
transaction; handlers only translate messages to calls.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from contracts import auth as api
from contracts.envelope import ErrorCode
from contracts.events import Actor, Event
from contracts.identity import BusRequest, Caller
from services.auth import repository as repo
from services.auth.keyring import KeyRing
from services.auth.keys import AccessClaims, sign_access_token, utcnow
from services.auth.lockout import (
    LockoutPolicy,
    address_remaining,
    lock_remaining,
    record_account_success,
    record_address_failure,
    release_address_attempt,
    reserve_account_attempt,
    settle_account_failure,
)
from services.auth.passwords import PasswordHashing
from services.auth.refresh_tokens import new_refresh_token, token_hash
from services.auth.settings import AuthSettings
from shared.errors import ServiceError
from shared.outbox import Outbox
from shared.store import Store, Transaction
from shared.telemetry import current_trace_id

INVALID_CREDENTIALS = ServiceError(ErrorCode.INVALID_CREDENTIALS, "email or password is wrong")


def _caller(message: BusRequest) -> Caller:
    if message.caller is None:
        raise ServiceError(ErrorCode.UNAUTHORIZED, "this operation needs an authenticated caller")
    return message.caller


def require_admin(message: BusRequest) -> Caller:
    caller = _caller(message)
    if not caller.is_admin:
        raise ServiceError(ErrorCode.FORBIDDEN, "this operation is for tenant admins")
    return caller


@dataclass
class _Attempt:
    """A login-like attempt after the limits were checked (and the attempt counted)."""

    throttled: float = 0.0
    locked: float = 0.0
    busy: bool = False

    def raise_if_refused(self) -> None:
        if self.busy:
            raise ServiceError(
                ErrorCode.RATE_LIMITED, "too many login attempts in progress for this account", retry_after=1
            )
        if self.throttled > 0:
            raise ServiceError(
                ErrorCode.RATE_LIMITED,
                "too many failed logins from this address",
                retry_after=math.ceil(self.throttled),
            )
        if self.locked > 0:
            raise ServiceError(
                ErrorCode.ACCOUNT_LOCKED, "the account is temporarily locked", retry_after=math.ceil(self.locked)
            )


@dataclass
class _Rotation:
    outcome: Literal["rotated", "reused", "invalid"]
    session: repo.AuthSessionRecord | None = None
    user: repo.UserRecord | None = None
    refresh_token: str | None = None


class Accounts:
    def __init__(
        self, *, store: Store, outbox: Outbox, hashing: PasswordHashing, keyring: KeyRing, settings: AuthSettings
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.hashing = hashing
        self.keyring = keyring
        self.settings = settings
        self.access_ttl = timedelta(seconds=settings.access_token_ttl_seconds)
        self.idle_ttl = timedelta(seconds=settings.refresh_idle_ttl_seconds)
        self.absolute_ttl = timedelta(seconds=settings.refresh_absolute_ttl_seconds)
        self.lockout = LockoutPolicy(
            threshold=settings.lockout_threshold,
            base_seconds=settings.lockout_base_seconds,
            max_seconds=settings.lockout_max_seconds,
            ip_limit=settings.ip_failure_limit,
            ip_window_seconds=settings.ip_failure_window_seconds,
        )

    # Events.
    def _event(
        self,
        type_: str,
        message: BusRequest,
        *,
        tenant_id: uuid.UUID | None,
        user_id: uuid.UUID | None,
        outcome: Literal["success", "failure"] = "success",
        data: dict[str, Any] | None = None,
    ) -> Event:
        return Event(
            type=type_,
            tenant_id=tenant_id,
            actor=Actor(kind="human", user_id=user_id, ip=message.client.ip, user_agent=message.client.user_agent),
            target=f"user:{user_id}" if user_id else None,
            outcome=outcome,
            trace_id=current_trace_id(),
            data=data or {},
        )

    def _stage(self, tx: Transaction, type_: str, message: BusRequest, **fields: Any) -> None:
        """Stage an event in the outbox of this transaction."""
        self.outbox.stage(tx, self._event(type_, message, **fields))

    def _revoke(
        self,
        tx: Transaction,
        sessions: list[repo.AuthSessionRecord],
        reason: str,
        message: BusRequest,
        now: datetime,
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
            self._stage(
                tx,
                api.SESSION_REVOKED,
                message,
                tenant_id=first.tenant_id,
                user_id=first.user_id,
                data=data.model_dump(mode="json"),
            )
        return api.Revoked(session_ids=[s.id for s in revoked], until=until)

    async def _commit_events(self) -> None:
        await self.outbox.flush()

    # Registration and members.
    async def _create_user(
        self, message: api.Register | api.AddTenantUser, tenant: repo.TenantRecord, role: str, new_tenant: bool
    ) -> repo.UserRecord:
        existing = await self.store.run(lambda tx: tx.get(repo.EMAIL.pack((message.email,))))
        if existing is not None:
            raise ServiceError(ErrorCode.EMAIL_TAKEN, "this email is already registered")
        password_hash = await self.hashing.hash(message.password)
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
        actor_id = message.caller.user_id if message.caller else user.id
        event = self._event(
            api.USER_REGISTERED,
            message,
            tenant_id=tenant.id,
            user_id=actor_id,
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
            repo.insert_user(tx, user)
            self.outbox.stage(tx, event)

        await self.store.run(create)
        await self._commit_events()
        return user

    async def register(self, message: api.Register) -> api.Registered:
        tenant = repo.TenantRecord(
            id=uuid.uuid4(), name=message.tenant_name or message.name or message.email, created_at=utcnow()
        )
        user = await self._create_user(message, tenant, "admin", new_tenant=True)
        return api.Registered(user=user.public(), tenant=tenant.public())

    async def add_tenant_user(self, message: api.AddTenantUser) -> api.UserPublic:
        caller = require_admin(message)
        tenant = await self.store.run(lambda tx: repo.get_tenant(tx, caller.tenant_id))
        if tenant is None:
            raise ServiceError(ErrorCode.NOT_FOUND, "tenant not found")
        user = await self._create_user(message, tenant, message.role, new_tenant=False)
        return user.public()

    async def list_tenant_users(self, message: api.ListTenantUsers) -> api.UserPage:
        caller = require_admin(message)
        space = repo.TENANT_USER[str(caller.tenant_id)]
        after = _decode_cursor(message.cursor, space.key()) if message.cursor else None
        users, last = await self.store.run(lambda tx: repo.tenant_users(tx, caller.tenant_id, after, message.limit))
        return api.UserPage(items=[u.public() for u in users], next_cursor=_encode_cursor(last) if last else None)

    # Login and tokens.
    async def _issue(self, user: repo.UserRecord, session: repo.AuthSessionRecord, refresh_token: str) -> api.TokenPair:
        key = await self.keyring.active()
        claims = AccessClaims(user_id=user.id, tenant_id=user.tenant_id, session_id=session.id, roles=user.roles)
        access = sign_access_token(
            key,
            claims,
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            now=utcnow(),
            ttl=self.access_ttl,
        )
        return api.TokenPair(
            access_token=access,
            refresh_token=refresh_token,
            expires_in=int(self.access_ttl.total_seconds()),
            user=user.public(),
        )

    def _reserve_attempt(
        self, tx: Transaction, user_id: uuid.UUID | None, address: str | None, now_ts: float
    ) -> _Attempt:
        """Check the limits and count this attempt in one transaction, before the password is
        checked: parallel guesses cannot all pass the check. A success gives the count back."""
        if address is not None:
            addresses = repo.get_address_failures(tx, address)
            throttled = address_remaining(addresses, now_ts, self.lockout)
            if throttled > 0:
                return _Attempt(throttled=throttled)
        if user_id is not None:
            failures = repo.get_failures(tx, user_id)
            locked = lock_remaining(failures, now_ts)
            if locked > 0:
                return _Attempt(locked=locked)
            reserved, admitted = reserve_account_attempt(failures, self.lockout)
            if not admitted:
                return _Attempt(busy=True)
            repo.put_failures(tx, user_id, reserved)
        if address is not None:
            repo.put_address_failures(tx, address, record_address_failure(addresses, now_ts, self.lockout))
        return _Attempt()

    def _give_back(self, tx: Transaction, user_id: uuid.UUID, address: str | None) -> None:
        if address is not None:
            repo.put_address_failures(tx, address, release_address_attempt(repo.get_address_failures(tx, address)))
        repo.put_failures(tx, user_id, record_account_success(repo.get_failures(tx, user_id)))

    async def login(self, message: api.Login) -> api.TokenPair:
        address = message.client.ip or "unknown"
        now_ts = time.time()

        def reserve(tx: Transaction) -> tuple[repo.UserRecord | None, _Attempt]:
            user = repo.user_by_email(tx, message.email)
            usable = user if user is not None and user.is_active else None
            return usable, self._reserve_attempt(tx, usable.id if usable else None, address, now_ts)

        usable, attempt = await self.store.run(reserve)
        attempt.raise_if_refused()
        if not await self.hashing.verify(usable.password_hash if usable else None, message.password):
            await self._login_failed(message, usable)
            raise INVALID_CREDENTIALS
        assert usable is not None
        new_hash = (
            await self.hashing.hash(message.password) if self.hashing.needs_rehash(usable.password_hash) else None
        )
        return await self._login_succeeded(message, usable, new_hash)

    async def _login_failed(
        self, message: BusRequest, user: repo.UserRecord | None, reason: str = "invalid_credentials"
    ) -> None:
        def record(tx: Transaction) -> None:
            tenant_id = user.tenant_id if user else None
            user_id = user.id if user else None
            self._stage(
                tx,
                api.LOGIN_FAILED,
                message,
                tenant_id=tenant_id,
                user_id=user_id,
                outcome="failure",
                data={"reason": reason, "known_account": user is not None},
            )
            if user_id is None:
                return
            now_ts = time.time()
            failures, locked = settle_account_failure(repo.get_failures(tx, user_id), now_ts, self.lockout)
            repo.put_failures(tx, user_id, failures)
            if locked:
                self._stage(
                    tx,
                    api.ACCOUNT_LOCKED,
                    message,
                    tenant_id=tenant_id,
                    user_id=user_id,
                    outcome="failure",
                    data={"locked_seconds": round(failures.locked_until - now_ts), "locks": failures.locks},
                )

        await self.store.run(record)
        await self._commit_events()

    async def _login_succeeded(self, message: api.Login, user: repo.UserRecord, new_hash: str | None) -> api.TokenPair:
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
            idle_expires_at=min(now + self.idle_ttl, now + self.absolute_ttl),
            expires_at=now + self.absolute_ttl,
        )
        refresh_token = new_refresh_token()

        def create(tx: Transaction) -> repo.UserRecord:
            current = repo.get_user(tx, user.id) or user
            self._give_back(tx, user.id, message.client.ip or "unknown")
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
            self._stage(
                tx,
                api.LOGIN_SUCCEEDED,
                message,
                tenant_id=user.tenant_id,
                user_id=user.id,
                data={"session_id": str(session.id), "device_name": session.device_name},
            )
            return current

        current = await self.store.run(create)
        await self._commit_events()
        return await self._issue(current, session, refresh_token)

    async def refresh(self, message: api.Refresh) -> api.TokenPair:
        digest = token_hash(message.refresh_token)

        def rotate(tx: Transaction) -> _Rotation:
            now = utcnow()
            record = repo.get_refresh(tx, digest)
            session = repo.get_session(tx, record.session_id) if record else None
            if record is None or session is None:
                return _Rotation("invalid")
            if record.spent_at is not None:
                if session.revoked_at is None:
                    self._stage(
                        tx,
                        api.REFRESH_TOKEN_REUSED,
                        message,
                        tenant_id=session.tenant_id,
                        user_id=session.user_id,
                        outcome="failure",
                        data={"session_id": str(session.id), "generation": record.generation},
                    )
                    self._revoke(tx, [session], "refresh_token_reused", message, now)
                return _Rotation("reused", session)
            user = repo.get_user(tx, session.user_id)
            if not session.active(now) or now >= record.expires_at or user is None or not user.is_active:
                return _Rotation("invalid")
            record.spent_at = now
            repo.put_refresh(tx, digest, record)
            successor = new_refresh_token()
            session.generation += 1
            session.last_used_at = now
            session.idle_expires_at = min(now + self.idle_ttl, session.expires_at)
            repo.put_session(tx, session)
            repo.put_refresh(
                tx,
                token_hash(successor),
                repo.RefreshRecord(
                    session_id=session.id, generation=session.generation, expires_at=session.idle_expires_at
                ),
            )
            self._stage(
                tx,
                api.TOKEN_REFRESHED,
                message,
                tenant_id=session.tenant_id,
                user_id=session.user_id,
                data={"session_id": str(session.id), "generation": session.generation},
            )
            return _Rotation("rotated", session, user, successor)

        rotation = await self.store.run(rotate)
        await self._commit_events()
        if rotation.outcome == "reused":
            raise ServiceError(
                ErrorCode.REFRESH_TOKEN_REUSED, "this refresh token was already used; the device has been signed out"
            )
        if rotation.outcome == "invalid":
            raise ServiceError(ErrorCode.REFRESH_TOKEN_INVALID, "the refresh token is not valid")
        assert rotation.session
        assert rotation.user
        assert rotation.refresh_token
        return await self._issue(rotation.user, rotation.session, rotation.refresh_token)

    # Devices and logout.
    async def _revoke_where(
        self,
        message: BusRequest,
        reason: str,
        event_type: str | None,
        choose: Any,
    ) -> api.Revoked:
        caller = _caller(message)

        def revoke(tx: Transaction) -> api.Revoked:
            now = utcnow()
            sessions = [s for s in repo.user_sessions(tx, caller.user_id) if choose(s, caller)]
            if event_type is not None:
                self._stage(
                    tx,
                    event_type,
                    message,
                    tenant_id=caller.tenant_id,
                    user_id=caller.user_id,
                    data={"session_ids": [str(s.id) for s in sessions if s.revoked_at is None]},
                )
            return self._revoke(tx, sessions, reason, message, now)

        revoked = await self.store.run(revoke)
        await self._commit_events()
        return revoked

    async def logout(self, message: api.Logout) -> api.Revoked:
        return await self._revoke_where(message, "logout", api.LOGOUT_EVENT, lambda s, c: s.id == c.session_id)

    async def logout_all(self, message: api.LogoutAll) -> api.Revoked:
        return await self._revoke_where(message, "logout_all", api.LOGOUT_EVENT, lambda s, c: True)

    async def revoke_device(self, message: api.RevokeDevice) -> api.Revoked:
        caller = _caller(message)
        owned = await self.store.run(lambda tx: repo.get_session(tx, message.device_id))
        if owned is None or owned.user_id != caller.user_id or owned.tenant_id != caller.tenant_id:
            raise ServiceError(ErrorCode.NOT_FOUND, "device not found")
        return await self._revoke_where(message, "device_revoked", None, lambda s, c: s.id == message.device_id)

    async def list_devices(self, message: api.ListDevices) -> api.DevicePage:
        """Active devices, most recently used first; the cursor is a position in that order."""
        caller = _caller(message)
        now = utcnow()
        start = _decode_offset(message.cursor) if message.cursor else 0
        sessions = await self.store.run(lambda tx: repo.user_sessions(tx, caller.user_id))
        active = sorted((s for s in sessions if s.active(now)), key=lambda s: s.last_used_at, reverse=True)
        page = active[start : start + message.limit]
        end = start + len(page)
        return api.DevicePage(
            items=[s.device(caller.session_id) for s in page],
            next_cursor=_encode_cursor(f"offset:{end}".encode()) if end < len(active) else None,
        )

    # Profile.
    async def _own_user(self, caller: Caller) -> repo.UserRecord:
        user = await self.store.run(lambda tx: repo.get_user(tx, caller.user_id))
        if user is None or user.tenant_id != caller.tenant_id:
            raise ServiceError(ErrorCode.NOT_FOUND, "user not found")
        return user

    async def get_me(self, message: api.GetMe) -> api.UserPublic:
        return (await self._own_user(_caller(message))).public()

    async def update_me(self, message: api.UpdateMe) -> api.UserPublic:
        caller = _caller(message)
        await self._own_user(caller)

        def update(tx: Transaction) -> repo.UserRecord:
            user = repo.get_user(tx, caller.user_id)
            if user is None:
                raise ServiceError(ErrorCode.NOT_FOUND, "user not found")
            user.name = message.name
            user.updated_at = utcnow()
            repo.put_user(tx, user)
            return user

        return (await self.store.run(update)).public()

    async def change_password(self, message: api.ChangePassword) -> api.Revoked:
        caller = _caller(message)
        user = await self._own_user(caller)
        # Guessing the current password with a stolen access token meets the login lockout too.
        attempt = await self.store.run(lambda tx: self._reserve_attempt(tx, user.id, None, time.time()))
        attempt.raise_if_refused()
        if not await self.hashing.verify(user.password_hash, message.current_password):
            await self._login_failed(message, user, reason="wrong_current_password")
            raise INVALID_CREDENTIALS
        new_hash = await self.hashing.hash(message.new_password)

        def change(tx: Transaction) -> api.Revoked:
            now = utcnow()
            current = repo.get_user(tx, caller.user_id)
            if current is None:
                raise ServiceError(ErrorCode.NOT_FOUND, "user not found")
            current.password_hash = new_hash
            current.updated_at = now
            repo.put_user(tx, current)
            self._give_back(tx, caller.user_id, None)
            others = [s for s in repo.user_sessions(tx, caller.user_id) if s.id != caller.session_id]
            self._stage(
                tx,
                api.PASSWORD_CHANGED,
                message,
                tenant_id=caller.tenant_id,
                user_id=caller.user_id,
                data={"revoked_sessions": sum(1 for s in others if s.revoked_at is None)},
            )
            return self._revoke(tx, others, "password_changed", message, now)

        revoked = await self.store.run(change)
        await self._commit_events()
        return revoked

    async def get_tenant(self, message: api.GetTenant) -> api.TenantPublic:
        caller = _caller(message)
        tenant = await self.store.run(lambda tx: repo.get_tenant(tx, caller.tenant_id))
        if tenant is None:
            raise ServiceError(ErrorCode.NOT_FOUND, "tenant not found")
        return tenant.public()


_CURSOR_DETAILS = [{"field": "cursor", "message": "not a cursor this list returned"}]


def _decode_offset(cursor: str) -> int:
    raw = _decode_cursor(cursor, b"offset:")
    try:
        return max(0, int(raw.removeprefix(b"offset:")))
    except ValueError as error:
        raise ServiceError(ErrorCode.VALIDATION_FAILED, "the cursor is not valid", _CURSOR_DETAILS) from error


def _encode_cursor(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def _decode_cursor(cursor: str, prefix: bytes) -> bytes:
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as error:
        raise ServiceError(ErrorCode.VALIDATION_FAILED, "the cursor is not valid", _CURSOR_DETAILS) from error
    if not key.startswith(prefix):
        raise ServiceError(ErrorCode.VALIDATION_FAILED, "the cursor is not valid", _CURSOR_DETAILS)
    return key
