"""Authentication, users and tenants: HTTP routes that become auth-service requests."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from contracts import auth
from contracts.identity import BusRequest, Caller
from services.gateway.deps import caller_of, send, send_for_json
from services.gateway.edge import VERIFIER_KEY
from services.gateway.http import ApiError, json_response, no_content, ok, ok_json, read_json
from services.gateway.routing import Route, body_of
from services.gateway.tokens import JwksVerifier


async def _send_body(request: web.Request, subject: str, model: type[BusRequest]) -> Any:
    return await send(request, subject, model, await read_json(request))


def _deny_now(request: web.Request, result: Any) -> None:
    """Deny revoked sessions on this gateway before replying; other gateways learn it from the stream."""
    verifier = request.app[VERIFIER_KEY]
    if isinstance(verifier, JwksVerifier) and result:
        revoked = auth.Revoked.model_validate(result)
        verifier.denied.add(revoked.session_ids, revoked.until)


async def register(request: web.Request) -> web.Response:
    return ok(await _send_body(request, auth.REGISTER, auth.Register), status=201)


async def login(request: web.Request) -> web.Response:
    return ok(await _send_body(request, auth.LOGIN, auth.Login))


async def refresh(request: web.Request) -> web.Response:
    return ok(await _send_body(request, auth.REFRESH, auth.Refresh))


async def logout(request: web.Request) -> web.Response:
    caller_of(request)
    await read_json(request)
    _deny_now(request, await send(request, auth.LOGOUT, auth.Logout, {}))
    return no_content()


async def logout_all(request: web.Request) -> web.Response:
    caller_of(request)
    await read_json(request)
    _deny_now(request, await send(request, auth.LOGOUT_ALL, auth.LogoutAll, {}))
    return no_content()


def _page_query(request: web.Request) -> dict[str, str]:
    return {key: request.query[key] for key in ("limit", "cursor") if key in request.query}


async def list_devices(request: web.Request) -> web.Response:
    return ok(await send(request, auth.LIST_DEVICES, auth.ListDevices, _page_query(request)))


async def revoke_device(request: web.Request) -> web.Response:
    result = await send(request, auth.REVOKE_DEVICE, auth.RevokeDevice, {"device_id": request.match_info["id"]})
    _deny_now(request, result)
    return no_content()


async def jwks(request: web.Request) -> web.Response:
    result = await send(request, auth.GET_JWKS, auth.GetJwks, {})
    return json_response(result, headers={"Cache-Control": "public, max-age=60"})


async def whoami(request: web.Request) -> web.Response:
    """The identity the gateway verified from the token, without asking any service."""
    return ok(caller_of(request).model_dump(mode="json"))


async def get_me(request: web.Request) -> web.Response:
    return ok_json(await send_for_json(request, auth.GET_ME, auth.GetMe, {}))


async def update_me(request: web.Request) -> web.Response:
    return ok(await _send_body(request, auth.UPDATE_ME, auth.UpdateMe))


async def change_password(request: web.Request) -> web.Response:
    _deny_now(request, await _send_body(request, auth.CHANGE_PASSWORD, auth.ChangePassword))
    return no_content()


async def get_tenant(request: web.Request) -> web.Response:
    return ok(await send(request, auth.GET_TENANT, auth.GetTenant, {}))


async def list_tenant_users(request: web.Request) -> web.Response:
    return ok(await send(request, auth.LIST_TENANT_USERS, auth.ListTenantUsers, _page_query(request)))


async def add_tenant_user(request: web.Request) -> web.Response:
    return ok(await _send_body(request, auth.ADD_TENANT_USER, auth.AddTenantUser), status=201)


async def remove_tenant_user(request: web.Request) -> web.Response:
    user_id = request.match_info["id"]
    _deny_now(request, await send(request, auth.REMOVE_TENANT_USER, auth.RemoveTenantUser, {"user_id": user_id}))
    return no_content()


async def delete_tenant(request: web.Request) -> web.Response:
    _deny_now(request, await send(request, auth.DELETE_TENANT, auth.DeleteTenant, {}))
    return no_content()


ROUTES = [
    Route(
        "POST",
        "/auth/register",
        register,
        "Register: a new tenant and its first admin",
        access="public",
        body=body_of(auth.Register),
        response=auth.Registered,
        status=201,
        tag="auth",
    ),
    Route(
        "POST",
        "/auth/login",
        login,
        "Log in: an access token and a refresh token for a new device",
        access="public",
        body=body_of(auth.Login),
        response=auth.TokenPair,
        tag="auth",
    ),
    Route(
        "POST",
        "/auth/refresh",
        refresh,
        "Spend a refresh token for a new pair",
        access="public",
        body=body_of(auth.Refresh),
        response=auth.TokenPair,
        tag="auth",
    ),
    Route("POST", "/auth/logout", logout, "Log this device out", status=204, tag="auth"),
    Route("POST", "/auth/logout-all", logout_all, "Log every device of the user out", status=204, tag="auth"),
    Route(
        "GET",
        "/auth/devices",
        list_devices,
        "The user's devices (auth sessions), most recently used first",
        response=auth.DevicePage,
        query=("limit", "cursor"),
        tag="auth",
    ),
    Route("DELETE", "/auth/devices/{id}", revoke_device, "Revoke one device", status=204, tag="auth"),
    Route(
        "GET",
        "/auth/jwks",
        jwks,
        "Keys that may have signed a live access token",
        access="public",
        response=auth.Jwks,
        enveloped=False,
        tag="auth",
    ),
    Route(
        "GET",
        "/auth/whoami",
        whoami,
        "The identity in the caller's access token (checked at the edge only)",
        response=Caller,
        tag="auth",
    ),
    Route("GET", "/users/me", get_me, "The caller's profile", response=auth.UserPublic, tag="users"),
    Route(
        "PATCH",
        "/users/me",
        update_me,
        "Update the caller's profile",
        body=body_of(auth.UpdateMe),
        response=auth.UserPublic,
        tag="users",
    ),
    Route(
        "POST",
        "/users/me/password",
        change_password,
        "Change password; other devices are revoked",
        body=body_of(auth.ChangePassword),
        status=204,
        tag="users",
    ),
    Route("GET", "/tenants/me", get_tenant, "The caller's tenant", response=auth.TenantPublic, tag="tenants"),
    Route(
        "GET",
        "/tenants/me/users",
        list_tenant_users,
        "Users of the caller's tenant",
        access="admin",
        response=auth.UserPage,
        query=("limit", "cursor"),
        tag="tenants",
    ),
    Route(
        "POST",
        "/tenants/me/users",
        add_tenant_user,
        "Add a user to the caller's tenant",
        access="admin",
        body=body_of(auth.AddTenantUser),
        response=auth.UserPublic,
        status=201,
        tag="tenants",
    ),
    Route(
        "DELETE",
        "/tenants/me/users/{id}",
        remove_tenant_user,
        "Remove a user of the caller's tenant",
        access="admin",
        status=204,
        tag="tenants",
        description="The user's login stops working and every device of theirs is revoked at once; their sessions "
        "end and their workspace is deprovisioned (auth.user_removed). Another tenant's user is 404; an admin "
        "removing themself is 409 CANNOT_REMOVE_SELF (the caller stays, so a tenant always keeps an admin).",
    ),
    Route(
        "DELETE",
        "/tenants/me",
        delete_tenant,
        "Delete the caller's tenant with every user",
        access="admin",
        status=204,
        tag="tenants",
        description="Every user is removed as by DELETE /tenants/me/users/{id}, a batch at a time, the caller last "
        "with the tenant itself (auth.tenant_deleted, one event per batch). Their emails may register again. "
        "A deletion cut short (504) goes on in the service; repeating the request finishes whatever is left.",
    ),
]

__all__ = ["ROUTES", "ApiError"]
