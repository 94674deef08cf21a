"""The auth service's key layout under ``("auth", …)`` and the transaction steps over it.

    ("auth", "tenant", tenant_id)                    → TenantRecord
    ("auth", "user", user_id)                        → UserRecord (with the password hash)
    ("auth", "email", email)                         → user_id   (unique per deployment)
    ("auth", "tenant_user", tenant_id, created, id)  → ""        (members, oldest first)
    ("auth", "session", session_id)                  → AuthSessionRecord (one refresh family)
    ("auth", "user_session", user_id, session_id)    → ""
    ("auth", "refresh", sha256(token))               → RefreshRecord
    ("auth", "session_refresh", session_id, sha256)  → ""        (so a finished family is purged whole)
    ("auth", "purge", user_id, finished_at, sid)     → ""        (families to forget, found by range)
    ("auth", "failures", user_id)                    → AccountFailures
    ("auth", "address_failures", ip)                 → AddressFailures
    ("auth", "register_rate", ip)                    → WindowCount (registrations from one address)
    ("auth", "signing_key", created, kid)            → SigningKey
    ("auth", "device_key", created, kid)             → DeviceKeyRecord (MAC key of device tokens, sealed)
    ("auth", "outbox", …)                            → staged events
    ("auth", "outbox_dead_letter", …)                → staged events that could not be decoded

Every function takes the transaction as its first argument and holds no awaits.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, Field

from contracts.auth import Device, TenantPublic, UserPublic
from contracts.envelope import ErrorCode
from services.auth.keys import SigningKey
from services.auth.lockout import AccountFailures, AddressFailures, WindowCount
from shared.decoded import DecodedCache
from shared.dispatch import Encoded
from shared.errors import ServiceError
from shared.store import Transaction
from shared.store.tuples import FastSubspace

ROOT = FastSubspace(("auth",))  # fdb's keys, packed faster (shared.store.tuples)
TENANT = ROOT["tenant"]
USER = ROOT["user"]
EMAIL = ROOT["email"]
TENANT_USER = ROOT["tenant_user"]
SESSION = ROOT["session"]
USER_SESSION = ROOT["user_session"]
REFRESH = ROOT["refresh"]
SESSION_REFRESH = ROOT["session_refresh"]
PURGE = ROOT["purge"]

# A revoked family is kept this long so that a stolen token presented later is still reported as reuse.
KEEP_REVOKED_SESSIONS = timedelta(days=1)
FAILURES = ROOT["failures"]
ADDRESS_FAILURES = ROOT["address_failures"]
REGISTER_RATE = ROOT["register_rate"]
SIGNING_KEY = ROOT["signing_key"]
DEVICE_KEY = ROOT["device_key"]
OUTBOX = ROOT["outbox"]
OUTBOX_DEAD_LETTER = ROOT["outbox_dead_letter"]

M = TypeVar("M", bound=BaseModel)


class TenantRecord(BaseModel):
    id: UUID
    name: str
    type: Literal["self", "organization"] = "self"
    created_at: datetime

    def public(self) -> TenantPublic:
        return TenantPublic(id=self.id, name=self.name, created_at=self.created_at)


class UserRecord(BaseModel):
    id: UUID
    tenant_id: UUID
    email: str
    name: str | None
    roles: list[str]
    password_hash: str = Field(repr=False)
    is_active: bool = True
    credentials_version: int = Field(
        default=0, description="Bumped by a password change or deactivation; logins in flight re-check it."
    )
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None = None

    def public(self) -> UserPublic:
        return UserPublic(
            id=self.id,
            email=self.email,
            name=self.name,
            tenant_id=self.tenant_id,
            roles=self.roles,
            created_at=self.created_at,
        )


class AuthSessionRecord(BaseModel):
    """One device's login: one refresh-token family."""

    id: UUID
    user_id: UUID
    tenant_id: UUID
    device_name: str | None
    ip: str | None
    user_agent: str | None
    created_at: datetime
    last_used_at: datetime
    idle_expires_at: datetime
    expires_at: datetime
    generation: int = 0
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.idle_expires_at and now < self.expires_at

    purge_at: datetime | None = Field(default=None, description="The time under which PURGE indexes it.")

    def finished_at(self) -> datetime:
        """When the family may be forgotten: expired, or revoked long enough ago that a reuse
        report no longer matters."""
        end = min(self.idle_expires_at, self.expires_at)
        return end if self.revoked_at is None else min(end, self.revoked_at + KEEP_REVOKED_SESSIONS)

    def device(self, current_session: UUID) -> Device:
        return Device(
            id=self.id,
            device_name=self.device_name,
            created_at=self.created_at,
            last_used_at=self.last_used_at,
            ip=self.ip,
            user_agent=self.user_agent,
            current=self.id == current_session,
        )


class DeviceKeyRecord(BaseModel):
    """The key that signs device tokens, sealed under the key-encryption key like the signing keys."""

    kid: str
    kek_id: str
    sealed: str = Field(repr=False)
    created_at: datetime


class RefreshRecord(BaseModel):
    session_id: UUID
    generation: int
    spent_at: datetime | None = None
    expires_at: datetime


def _load(tx: Transaction, key: bytes, model: type[M]) -> M | None:
    raw = tx.get(key)
    return None if raw is None else model.model_validate_json(raw)


def _save(tx: Transaction, key: bytes, record: BaseModel) -> None:
    tx.set(key, record.model_dump_json().encode())


# Tenants and users.
def get_tenant(tx: Transaction, tenant_id: UUID) -> TenantRecord | None:
    return _load(tx, TENANT.pack((str(tenant_id),)), TenantRecord)


def put_tenant(tx: Transaction, tenant: TenantRecord) -> None:
    _save(tx, TENANT.pack((str(tenant.id),)), tenant)


def get_user(tx: Transaction, user_id: UUID) -> UserRecord | None:
    return _load(tx, USER.pack((str(user_id),)), UserRecord)


def _public_user_of(raw: bytes) -> tuple[UUID, Encoded]:
    user = UserRecord.model_validate_json(raw)
    return user.tenant_id, Encoded(user.public())


_PUBLIC_USERS = DecodedCache(_public_user_of)


def get_public_user(tx: Transaction, user_id: UUID) -> tuple[UUID, Encoded] | None:
    """A user's tenant and profile (a ``UserPublic``, encoded), for reading only: made once per
    stored value and shared between reads (``shared.decoded``)."""
    raw = tx.get(USER.pack((str(user_id),)))
    return None if raw is None else _PUBLIC_USERS(raw)


def put_user(tx: Transaction, user: UserRecord) -> None:
    _save(tx, USER.pack((str(user.id),)), user)


def user_by_email(tx: Transaction, email: str) -> UserRecord | None:
    user_id = tx.get(EMAIL.pack((email,)))
    return None if user_id is None else get_user(tx, UUID(user_id.decode()))


def insert_user(tx: Transaction, user: UserRecord) -> None:
    """A new user; the email index in the same transaction makes emails unique."""
    email_key = EMAIL.pack((user.email,))
    if tx.get(email_key) is not None:
        raise ServiceError(ErrorCode.EMAIL_TAKEN, "this email is already registered")
    tx.set(email_key, str(user.id).encode())
    tx.set(TENANT_USER.pack((str(user.tenant_id), user.created_at.timestamp(), str(user.id))), b"")
    put_user(tx, user)


def tenant_users(
    tx: Transaction, tenant_id: UUID, after: bytes | None, limit: int
) -> tuple[list[UserRecord], bytes | None]:
    space = TENANT_USER[str(tenant_id)]
    begin = after + b"\x00" if after is not None else space.range().start
    rows = tx.get_range(begin, space.range().stop, limit=limit + 1)
    users = [user for key, _ in rows[:limit] if (user := get_user(tx, UUID(space.unpack(key)[1]))) is not None]
    return users, rows[limit - 1][0] if len(rows) > limit else None


def tenant_user_index(tx: Transaction, tenant_id: UUID, limit: int) -> list[tuple[bytes, UUID]]:
    """The first ``limit`` entries of a tenant's member index, oldest first: (index key, user id)."""
    space = TENANT_USER[str(tenant_id)]
    rows = tx.get_range(space.range().start, space.range().stop, limit=limit)
    return [(key, UUID(space.unpack(key)[1])) for key, _ in rows]


def delete_user(tx: Transaction, user: UserRecord) -> None:
    """Forget a user whose families were already purged: the record, its email (free to register
    again), its place in the tenant and its failure count."""
    email_key = EMAIL.pack((user.email,))
    if tx.get(email_key) == str(user.id).encode():
        tx.clear(email_key)
    tx.clear(TENANT_USER.pack((str(user.tenant_id), user.created_at.timestamp(), str(user.id))))
    tx.clear(FAILURES.pack((str(user.id),)))
    for space in (USER_SESSION[str(user.id)], PURGE[str(user.id)]):
        tx.clear_range(space.range().start, space.range().stop)
    tx.clear(USER.pack((str(user.id),)))


def delete_tenant(tx: Transaction, tenant_id: UUID) -> None:
    """Forget a tenant whose users were all deleted."""
    space = TENANT_USER[str(tenant_id)]
    tx.clear_range(space.range().start, space.range().stop)
    tx.clear(TENANT.pack((str(tenant_id),)))


# Auth sessions and refresh tokens.
def get_session(tx: Transaction, session_id: UUID) -> AuthSessionRecord | None:
    return _load(tx, SESSION.pack((str(session_id),)), AuthSessionRecord)


def _purge_key(session: AuthSessionRecord, at: datetime) -> bytes:
    key: bytes = PURGE.pack((str(session.user_id), at.timestamp(), str(session.id)))
    return key


def put_session(tx: Transaction, session: AuthSessionRecord) -> None:
    finished = session.finished_at()
    if session.purge_at != finished:
        if session.purge_at is not None:
            tx.clear(_purge_key(session, session.purge_at))
        tx.set(_purge_key(session, finished), b"")
        session.purge_at = finished
    _save(tx, SESSION.pack((str(session.id),)), session)
    tx.set(USER_SESSION.pack((str(session.user_id), str(session.id))), b"")


def finished_sessions(tx: Transaction, user_id: UUID, now: datetime) -> list[AuthSessionRecord]:
    """The user's families that may be forgotten, read from the PURGE index (not a scan of them all)."""
    space = PURGE[str(user_id)]
    rows = tx.get_range(space.range().start, space.pack((now.timestamp(),)))
    return [s for key, _ in rows if (s := get_session(tx, UUID(space.unpack(key)[1]))) is not None]


def user_sessions(tx: Transaction, user_id: UUID) -> list[AuthSessionRecord]:
    space = USER_SESSION[str(user_id)]
    rows = tx.get_range(space.range().start, space.range().stop)
    return [s for key, _ in rows if (s := get_session(tx, UUID(space.unpack(key)[0]))) is not None]


def get_refresh(tx: Transaction, digest: bytes) -> RefreshRecord | None:
    return _load(tx, REFRESH.pack((digest,)), RefreshRecord)


def put_refresh(tx: Transaction, digest: bytes, record: RefreshRecord) -> None:
    _save(tx, REFRESH.pack((digest,)), record)
    tx.set(SESSION_REFRESH.pack((str(record.session_id), digest)), b"")


def purge_session(tx: Transaction, session: AuthSessionRecord) -> None:
    """Forget a finished family: its record, its index entry and every refresh-token hash it issued."""
    hashes = SESSION_REFRESH[str(session.id)]
    for key, _ in tx.get_range(hashes.range().start, hashes.range().stop):
        tx.clear(REFRESH.pack((hashes.unpack(key)[0],)))
    tx.clear_range(hashes.range().start, hashes.range().stop)
    tx.clear(SESSION.pack((str(session.id),)))
    if session.purge_at is not None:
        tx.clear(_purge_key(session, session.purge_at))
    tx.clear(USER_SESSION.pack((str(session.user_id), str(session.id))))


# Failed logins.
def get_failures(tx: Transaction, user_id: UUID) -> AccountFailures:
    return _load(tx, FAILURES.pack((str(user_id),)), AccountFailures) or AccountFailures()


def put_failures(tx: Transaction, user_id: UUID, state: AccountFailures) -> None:
    _save(tx, FAILURES.pack((str(user_id),)), state)


def get_address_failures(tx: Transaction, ip: str) -> AddressFailures:
    return _load(tx, ADDRESS_FAILURES.pack((ip,)), AddressFailures) or AddressFailures()


def put_address_failures(tx: Transaction, ip: str, state: AddressFailures) -> None:
    _save(tx, ADDRESS_FAILURES.pack((ip,)), state)


def stale_addresses(tx: Transaction, after: bytes | None, limit: int) -> list[tuple[bytes, AddressFailures]]:
    """Up to ``limit`` per-address records after the key ``after`` (a sweep in key order)."""
    begin = after + b"\x00" if after is not None else ADDRESS_FAILURES.range().start
    rows = tx.get_range(begin, ADDRESS_FAILURES.range().stop, limit=limit)
    return [(key, AddressFailures.model_validate_json(value)) for key, value in rows]


def get_register_rate(tx: Transaction, ip: str) -> WindowCount:
    return _load(tx, REGISTER_RATE.pack((ip,)), WindowCount) or WindowCount()


def put_register_rate(tx: Transaction, ip: str, state: WindowCount) -> None:
    _save(tx, REGISTER_RATE.pack((ip,)), state)


# Signing keys, oldest first.
def signing_keys(tx: Transaction) -> list[SigningKey]:
    rows = tx.get_range(SIGNING_KEY.range().start, SIGNING_KEY.range().stop)
    return [SigningKey.model_validate_json(value) for _, value in rows]


def put_signing_key(tx: Transaction, key: SigningKey) -> None:
    _save(tx, SIGNING_KEY.pack((key.created_at.timestamp(), key.kid)), key)


def delete_signing_key(tx: Transaction, key: SigningKey) -> None:
    tx.clear(SIGNING_KEY.pack((key.created_at.timestamp(), key.kid)))


# Device-token keys, oldest first.
def device_keys(tx: Transaction) -> list[DeviceKeyRecord]:
    rows = tx.get_range(DEVICE_KEY.range().start, DEVICE_KEY.range().stop)
    return [DeviceKeyRecord.model_validate_json(value) for _, value in rows]


def put_device_key(tx: Transaction, key: DeviceKeyRecord) -> None:
    _save(tx, DEVICE_KEY.pack((key.created_at.timestamp(), key.kid)), key)
