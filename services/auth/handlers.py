"""Bus handlers of the auth service: each subject validates its message, calls one use case and
replies with the envelope (``shared.bus.replies``). The table is the whole mapping."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from faststream.nats import NatsBroker

from contracts import auth as api
from contracts import subjects
from contracts.envelope import ErrorCode
from contracts.identity import BusRequest, Caller
from services.auth.accounts import Accounts
from services.auth.keyring import KeyRing, RotationTooSoon
from shared.bus import replies
from shared.errors import ServiceError

UseCase = Callable[[Any], Awaitable[Any]]

# Held by the platform's operators only: no HTTP route grants it (tenant roles are member and admin),
# so a caller with it reaches the bus through an operator's own identity, not through the gateway.
OPERATOR = "operator"


def require_operator(message: BusRequest) -> Caller:
    if message.caller is None:
        raise ServiceError(ErrorCode.UNAUTHORIZED, "this operation needs an authenticated caller")
    if OPERATOR not in message.caller.roles:
        raise ServiceError(ErrorCode.FORBIDDEN, "this operation is for platform operators")
    return message.caller


def handler_table(accounts: Accounts, keyring: KeyRing) -> list[tuple[str, type[BusRequest], UseCase]]:
    async def jwks(message: api.GetJwks) -> dict[str, list[dict[str, Any]]]:
        """Public keys that may have signed a live access token."""
        return await keyring.jwks()

    async def rotate_signing_key(message: api.RotateSigningKey) -> dict[str, str]:
        """Start signing with a new key (operators only, at most once per interval); the old one stays
        published until its tokens expire."""
        require_operator(message)
        try:
            key = await keyring.rotate()
        except RotationTooSoon as error:
            raise ServiceError(
                ErrorCode.RATE_LIMITED, "the signing key was rotated recently", retry_after=math.ceil(error.retry_after)
            ) from error
        return {"kid": key.kid}

    return [
        (api.REGISTER, api.Register, accounts.register),
        (api.LOGIN, api.Login, accounts.login),
        (api.REFRESH, api.Refresh, accounts.refresh),
        (api.LOGOUT, api.Logout, accounts.logout),
        (api.LOGOUT_ALL, api.LogoutAll, accounts.logout_all),
        (api.LIST_DEVICES, api.ListDevices, accounts.list_devices),
        (api.REVOKE_DEVICE, api.RevokeDevice, accounts.revoke_device),
        (api.GET_JWKS, api.GetJwks, jwks),
        (api.ROTATE_SIGNING_KEY, api.RotateSigningKey, rotate_signing_key),
        (api.GET_ME, api.GetMe, accounts.get_me),
        (api.UPDATE_ME, api.UpdateMe, accounts.update_me),
        (api.CHANGE_PASSWORD, api.ChangePassword, accounts.change_password),
        (api.GET_TENANT, api.GetTenant, accounts.get_tenant),
        (api.LIST_TENANT_USERS, api.ListTenantUsers, accounts.list_tenant_users),
        (api.ADD_TENANT_USER, api.AddTenantUser, accounts.add_tenant_user),
    ]


def register_handlers(broker: NatsBroker, accounts: Accounts, keyring: KeyRing, *, concurrency: int) -> None:
    """Subscribe every use case; each handles up to ``concurrency`` messages at once, because they
    wait on the hash pool and the store (FastStream's default of one serialized every login)."""
    queue = subjects.queue_group(api.SERVICE)
    for subject, model, use_case in handler_table(accounts, keyring):
        broker.subscriber(subject, queue=queue, title=subject, max_workers=concurrency)(replies(model)(use_case))


def published_after_retire(access_ttl_seconds: int, leeway_seconds: int) -> timedelta:
    return timedelta(seconds=access_ttl_seconds + leeway_seconds)
