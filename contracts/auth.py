"""Auth service bus API: subjects, requests, replies and events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, EmailStr, Field, StringConstraints

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

# Event types (published on ``evt.auth.<name>``).
USER_REGISTERED: Final = "auth.user_registered"
LOGIN_SUCCEEDED: Final = "auth.login_succeeded"
LOGIN_FAILED: Final = "auth.login_failed"
ACCOUNT_LOCKED: Final = "auth.account_locked"
TOKEN_REFRESHED: Final = "auth.token_refreshed"
REFRESH_TOKEN_REUSED: Final = "auth.refresh_token_reused"
LOGOUT_EVENT: Final = "auth.logout"
SESSION_REVOKED: Final = "auth.session_revoked"
PASSWORD_CHANGED: Final = "auth.password_changed"
SESSION_REVOKED_SUBJECT: Final = "evt.auth.session_revoked"

PASSWORD_MIN = 8
PASSWORD_MAX = 1024


def _lower(value: str) -> str:
    return value.lower()


Email = Annotated[EmailStr, StringConstraints(max_length=254), AfterValidator(_lower)]
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
class SessionsRevokedData(BaseModel):
    user_id: UUID
    session_ids: list[UUID]
    reason: str
    until: datetime
