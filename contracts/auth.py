"""Auth service bus API: subjects, requests, replies and events."""

from __future__ import annotations

import functools
import unicodedata
from datetime import datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID

import regex
from pydantic import AfterValidator, BaseModel, BeforeValidator, EmailStr, Field, StringConstraints

from contracts.identity import BusRequest
from contracts.subjects import rpc

SERVICE: Final = "auth"

REGISTER: Final = rpc(SERVICE, "register")
LOGIN: Final = rpc(SERVICE, "login")
REFRESH: Final = rpc(SERVICE, "refresh")
LOGOUT: Final = rpc(SERVICE, "logout")
LOGOUT_ALL: Final = rpc(SERVICE, "logout_all")
LIST_DEVICES: Final = rpc(SERVICE, "list_devices")
REVOKE_DEVICE: Final = rpc(SERVICE, "revoke_device")
GET_JWKS: Final = rpc(SERVICE, "jwks")
ROTATE_SIGNING_KEY: Final = rpc(SERVICE, "rotate_signing_key")
GET_ME: Final = rpc(SERVICE, "get_me")
UPDATE_ME: Final = rpc(SERVICE, "update_me")
CHANGE_PASSWORD: Final = rpc(SERVICE, "change_password")
GET_TENANT: Final = rpc(SERVICE, "get_tenant")
LIST_TENANT_USERS: Final = rpc(SERVICE, "list_tenant_users")
ADD_TENANT_USER: Final = rpc(SERVICE, "add_tenant_user")
REMOVE_TENANT_USER: Final = rpc(SERVICE, "remove_tenant_user")
DELETE_TENANT: Final = rpc(SERVICE, "delete_tenant")

# Event types (published on ``evt.auth.<name>``).
USER_REGISTERED: Final = "auth.user_registered"
LOGIN_SUCCEEDED: Final = "auth.login_succeeded"
LOGIN_FAILED: Final = "auth.login_failed"
ACCOUNT_LOCKED: Final = "auth.account_locked"
TOKEN_REFRESHED: Final = "auth.token_refreshed"
REFRESH_TOKEN_REUSED: Final = "auth.refresh_token_reused"
LOGOUT_EVENT: Final = "auth.logout"
LOGOUT_SUBJECT: Final = "evt.auth.logout"
SESSION_REVOKED: Final = "auth.session_revoked"
PASSWORD_CHANGED: Final = "auth.password_changed"
SESSION_REVOKED_SUBJECT: Final = "evt.auth.session_revoked"
# A user taken out of their tenant, and a tenant deleted with all its users: data ``UserRemovedData`` /
# ``TenantDeletedData``. Consumers end what the user (or tenant) had: sessions, workspaces.
USER_REMOVED: Final = "auth.user_removed"
TENANT_DELETED: Final = "auth.tenant_deleted"

PASSWORD_MIN = 8
PASSWORD_MAX = 1024


EMAIL_MAX = 254

# Scripts an address may be written in: the "recommended" scripts of UAX #31 (Table 5), those in
# everyday use. Historic and limited-use ones (Cherokee, Coptic, …) mostly add Latin lookalikes.
_SCRIPTS: Final = (
    "Latin", "Greek", "Cyrillic", "Armenian", "Hebrew", "Arabic", "Thaana", "Georgian", "Ethiopic",
    "Devanagari", "Bengali", "Gurmukhi", "Gujarati", "Oriya", "Tamil", "Telugu", "Kannada", "Malayalam",
    "Sinhala", "Thai", "Lao", "Tibetan", "Myanmar", "Khmer", "Han", "Hiragana", "Katakana", "Hangul", "Bopomofo",
)  # fmt: skip
# As in UTS #39, Japanese (Han + kana), Korean (Han + Hangul) and Han with Bopomofo each count as one script.
_WRITING_SYSTEMS: Final = {
    "Han": ("Han", "Japanese", "Korean", "Han+Bopomofo"),
    "Hiragana": ("Japanese",),
    "Katakana": ("Japanese",),
    "Hangul": ("Korean",),
    "Bopomofo": ("Han+Bopomofo",),
}
# Script_Extensions, not Script: a mark or sign shared by a few scripts (the kana length mark ー) fits each.
_IN_SCRIPT: Final = tuple((name, regex.compile(rf"\p{{scx={name}}}")) for name in _SCRIPTS)
_SHARED: Final = regex.compile(r"[\p{scx=Common}\p{scx=Inherited}]")
_LETTER_MARK_OR_DIGIT: Final = regex.compile(r"[\p{L}\p{M}\p{Nd}]")


@functools.lru_cache(maxsize=4096)
def _writing_systems(char: str) -> frozenset[str] | None:
    """The writing systems a character can belong to; None if every script shares it (digits, dots, +)."""
    if char.isascii():
        return frozenset({"Latin"}) if char.isalpha() else None
    if not _LETTER_MARK_OR_DIGIT.match(char):
        raise ValueError(f"{char!r} is not allowed in an email address: beyond ASCII only letters and digits are")
    if _SHARED.match(char):
        return None
    systems = {
        system for name, pattern in _IN_SCRIPT if pattern.match(char) for system in _WRITING_SYSTEMS.get(name, (name,))
    }
    if not systems:
        raise ValueError(f"{char!r} is not allowed in an email address: its script is not in everyday use")
    return frozenset(systems)


def _single_script(part: str) -> None:
    """Refuse a part that mixes scripts: 'admin' spelt with a Cyrillic a (U+0430) would pass for 'admin'."""
    common: frozenset[str] | None = None
    for char in part:
        systems = _writing_systems(char)
        if systems is None:
            continue
        common = systems if common is None else common & systems
        if not common:
            raise ValueError(f"{part!r} mixes scripts: each part of an email address must be in one script")


def _canonical(value: Any) -> Any:
    """NFKC folds compatibility forms (full-width, mathematical bold, …) into plain letters: one key per address."""
    if not isinstance(value, str) or len(value) > 4 * EMAIL_MAX:
        return value  # too long to be an address: the length check refuses it without normalising megabytes
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).lower())


def _checked(value: str) -> str:
    """Lower-case (email_validator keeps the local part's case) and refuse mixed-script parts."""
    value = value.lower()
    local, _, domain = value.rpartition("@")
    for part in (local, *domain.split(".")):
        _single_script(part)
    return value


# Emails are keys (uniqueness, login, lockout): every request that carries one normalises it the same way.
Email = Annotated[
    EmailStr,
    StringConstraints(max_length=EMAIL_MAX),
    BeforeValidator(_canonical),
    AfterValidator(_checked),
    Field(
        description="Compared after NFKC normalisation and lower-casing; ASCII, or each part (local part, "
        "domain label) in one script.",
        examples=["ada.lovelace@example.com"],
    ),
]
Password = Annotated[str, Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX, repr=False)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Role = Literal["member", "admin"]


# Requests (commands are imperative).
class Register(BusRequest):
    email: Email
    password: Password
    name: Name | None = None
    tenant_name: Name | None = None


class Login(BusRequest):
    email: Email
    password: Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX, repr=False)]
    device_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    device_token: Annotated[str, Field(max_length=512)] | None = Field(
        default=None,
        repr=False,
        description="The device_token an earlier successful login of this account returned: the login is then "
        "held only by the account's own lockout, not by the per-address throttle. An invalid one is ignored.",
    )


class Refresh(BusRequest):
    refresh_token: Annotated[str, Field(min_length=1, max_length=512, repr=False)]


class Logout(BusRequest):
    pass


class LogoutAll(BusRequest):
    pass


class ListDevices(BusRequest):
    limit: Annotated[int, Field(ge=1, le=500)] = 50
    cursor: str | None = None


class RevokeDevice(BusRequest):
    device_id: UUID


class GetJwks(BusRequest):
    pass


class RotateSigningKey(BusRequest):
    pass


class GetMe(BusRequest):
    pass


class UpdateMe(BusRequest):
    name: Name


class ChangePassword(BusRequest):
    current_password: Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX, repr=False)]
    new_password: Password


class GetTenant(BusRequest):
    pass


class ListTenantUsers(BusRequest):
    limit: Annotated[int, Field(ge=1, le=500)] = 50
    cursor: str | None = None


class AddTenantUser(BusRequest):
    email: Email
    password: Password
    name: Name | None = None
    role: Role = "member"


class RemoveTenantUser(BusRequest):
    """Remove a user of the caller's tenant (admins only): their login ends, every device is revoked."""

    user_id: UUID


class DeleteTenant(BusRequest):
    """Delete the caller's tenant with every user (admins only)."""


# Replies.
class UserPublic(BaseModel):
    """A user as clients see it: never a password hash."""

    id: UUID
    email: str
    name: str | None
    tenant_id: UUID
    roles: list[str]
    created_at: datetime


class TenantPublic(BaseModel):
    id: UUID
    name: str
    created_at: datetime


class Registered(BaseModel):
    user: UserPublic
    tenant: TenantPublic


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    user: UserPublic
    device_token: str | None = Field(
        default=None,
        description="Login only: send it back on this account's next login from this device (see Login.device_token).",
    )


class Device(BaseModel):
    id: UUID
    device_name: str | None
    created_at: datetime
    last_used_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool


class DevicePage(BaseModel):
    items: list[Device]
    next_cursor: str | None


class UserPage(BaseModel):
    items: list[UserPublic]
    next_cursor: str | None


class Revoked(BaseModel):
    """Auth sessions that were just revoked: the gateway denies their access tokens at once."""

    session_ids: list[UUID]
    until: datetime = Field(description="When the last access token of these sessions expires.")


class Jwks(BaseModel):
    keys: list[dict[str, Any]]


# Event data.
class LogoutData(BaseModel):
    """``data`` of ``auth.logout``."""

    user_id: UUID | None = Field(default=None, description="Absent on events published before it was added.")
    session_ids: list[UUID]
    reason: str = Field(
        default="logout",
        description="logout: the caller's device was signed out; logout_all: every device of the user was.",
        examples=["logout_all"],
    )


class SessionsRevokedData(BaseModel):
    user_id: UUID
    session_ids: list[UUID]
    reason: str
    until: datetime


class UserRemovedData(BaseModel):
    """``data`` of ``auth.user_removed``."""

    user_id: UUID
    removed_by: UUID | None = Field(default=None, description="The admin who removed the user.")


class TenantDeletedData(BaseModel):
    """``data`` of ``auth.tenant_deleted``: every user the tenant had when it was deleted.

    A tenant is deleted a batch of users per transaction (store limits), and each batch publishes one
    event naming the users it deleted: every user appears in exactly one event of the deletion, and
    the last one (``complete``) is published when the tenant itself is gone. A consumer acts on each
    event's ``user_ids`` as they come."""

    user_ids: list[UUID]
    complete: bool = Field(
        default=True, description="False on every event but the last of a deletion that took several batches."
    )
