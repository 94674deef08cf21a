"""Bus handlers of the auth service: each subject validates its message, calls one use case and
replies with the envelope (``shared.dispatch``). The table is the whole mapping."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from contracts import auth as api
from contracts import subjects
from contracts.envelope import ErrorCode
from contracts.identity import BusRequest, Caller
from services.auth import devices, login, profile, registration, removal, rotation
from services.auth.context import AuthContext
from services.auth.keyring import RotationTooSoon
from shared.dispatch import Dispatcher, Handler, bind
from shared.errors import ServiceError, caller_of

# Held by the platform's operators only: no HTTP route grants it (tenant roles are member and admin),
# so a caller with it reaches the bus through an operator's own identity, not through the gateway.
OPERATOR = "operator"


def require_operator(message: BusRequest) -> Caller:
    caller = caller_of(message)
    if OPERATOR not in caller.roles:
        raise ServiceError(ErrorCode.FORBIDDEN, "this operation is for platform operators")
    return caller


def handler_table(ctx: AuthContext) -> list[tuple[str, type[BusRequest], Handler]]:
    keyring = ctx.keyring

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
        (api.REGISTER, api.Register, bind(ctx, registration.register)),
        (api.LOGIN, api.Login, bind(ctx, login.login)),
        (api.REFRESH, api.Refresh, bind(ctx, rotation.refresh)),
        (api.LOGOUT, api.Logout, bind(ctx, devices.logout)),
        (api.LOGOUT_ALL, api.LogoutAll, bind(ctx, devices.logout_all)),
        (api.LIST_DEVICES, api.ListDevices, bind(ctx, devices.list_devices)),
        (api.REVOKE_DEVICE, api.RevokeDevice, bind(ctx, devices.revoke_device)),
        (api.GET_JWKS, api.GetJwks, jwks),
        (api.ROTATE_SIGNING_KEY, api.RotateSigningKey, rotate_signing_key),
        (api.GET_ME, api.GetMe, bind(ctx, profile.get_me)),
        (api.UPDATE_ME, api.UpdateMe, bind(ctx, profile.update_me)),
        (api.CHANGE_PASSWORD, api.ChangePassword, bind(ctx, login.change_password)),
        (api.GET_TENANT, api.GetTenant, bind(ctx, profile.get_tenant)),
        (api.LIST_TENANT_USERS, api.ListTenantUsers, bind(ctx, registration.list_tenant_users)),
        (api.ADD_TENANT_USER, api.AddTenantUser, bind(ctx, registration.add_tenant_user)),
        (api.REMOVE_TENANT_USER, api.RemoveTenantUser, bind(ctx, removal.remove_tenant_user)),
        (api.DELETE_TENANT, api.DeleteTenant, bind(ctx, removal.delete_tenant)),
    ]


def register_handlers(dispatcher: Dispatcher, ctx: AuthContext, *, concurrency: int) -> None:
    """Subscribe every use case; each handles up to ``concurrency`` messages at once, because they
    wait on the hash pool and the store (one at a time serialized every login behind its hash)."""
    queue = subjects.queue_group(api.SERVICE)
    for subject, model, use_case in handler_table(ctx):
        dispatcher.add(subject, model, use_case, queue=queue, max_workers=concurrency)


def published_after_retire(access_ttl_seconds: int, leeway_seconds: int) -> timedelta:
    return timedelta(seconds=access_ttl_seconds + leeway_seconds)
