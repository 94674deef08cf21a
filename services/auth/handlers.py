"""Bus handlers of the auth service: parse, call the use case, reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from faststream.nats import NatsBroker

from contracts import auth as api
from contracts import subjects
from services.auth.accounts import Accounts, _admin
from services.auth.keyring import KeyRing
from shared.bus import replies

Handler = Callable[[Any], Awaitable[bytes]]


def register_handlers(broker: NatsBroker, accounts: Accounts, keyring: KeyRing) -> None:
    queue = subjects.queue_group(api.SERVICE)

    def on(subject: str) -> Callable[[Handler], Any]:
        subscriber: Callable[[Handler], Any] = broker.subscriber(subject, queue=queue, title=subject)
        return subscriber

    @on(api.REGISTER)
    @replies(api.Register)
    async def register(message: api.Register) -> api.Registered:
        """Register a new tenant and its first admin."""
        return await accounts.register(message)

    @on(api.LOGIN)
    @replies(api.Login)
    async def login(message: api.Login) -> api.TokenPair:
        """Check credentials and open an auth session (device) with a new token pair."""
        return await accounts.login(message)

    @on(api.REFRESH)
    @replies(api.Refresh)
    async def refresh(message: api.Refresh) -> api.TokenPair:
        """Spend a refresh token for a new pair; a spent token revokes its family."""
        return await accounts.refresh(message)

    @on(api.LOGOUT)
    @replies(api.Logout)
    async def logout(message: api.Logout) -> api.Revoked:
        """Revoke the caller's auth session."""
        return await accounts.logout(message)

    @on(api.LOGOUT_ALL)
    @replies(api.LogoutAll)
    async def logout_all(message: api.LogoutAll) -> api.Revoked:
        """Revoke every auth session of the caller."""
        return await accounts.logout_all(message)

    @on(api.LIST_DEVICES)
    @replies(api.ListDevices)
    async def list_devices(message: api.ListDevices) -> list[dict[str, object]]:
        """The caller's active auth sessions."""
        return [d.model_dump(mode="json") for d in await accounts.list_devices(message)]

    @on(api.REVOKE_DEVICE)
    @replies(api.RevokeDevice)
    async def revoke_device(message: api.RevokeDevice) -> api.Revoked:
        """Revoke one of the caller's auth sessions."""
        return await accounts.revoke_device(message)

    @on(api.GET_JWKS)
    @replies(api.GetJwks)
    async def jwks(message: api.GetJwks) -> dict[str, list[dict[str, Any]]]:
        """Public keys that may have signed a live access token."""
        return await keyring.jwks()

    @on(api.ROTATE_SIGNING_KEY)
    @replies(api.RotateSigningKey)
    async def rotate_signing_key(message: api.RotateSigningKey) -> dict[str, str]:
        """Start signing with a new key (admins only); the old one stays published until its tokens expire."""
        _admin(message)
        key = await keyring.rotate()
        return {"kid": key.kid}

    @on(api.GET_ME)
    @replies(api.GetMe)
    async def get_me(message: api.GetMe) -> api.UserPublic:
        """The caller's profile."""
        return await accounts.get_me(message)

    @on(api.UPDATE_ME)
    @replies(api.UpdateMe)
    async def update_me(message: api.UpdateMe) -> api.UserPublic:
        """Update the caller's profile."""
        return await accounts.update_me(message)

    @on(api.CHANGE_PASSWORD)
    @replies(api.ChangePassword)
    async def change_password(message: api.ChangePassword) -> api.Revoked:
        """Change the caller's password and revoke every other device."""
        return await accounts.change_password(message)

    @on(api.GET_TENANT)
    @replies(api.GetTenant)
    async def get_tenant(message: api.GetTenant) -> api.TenantPublic:
        """The caller's tenant."""
        return await accounts.get_tenant(message)

    @on(api.LIST_TENANT_USERS)
    @replies(api.ListTenantUsers)
    async def list_tenant_users(message: api.ListTenantUsers) -> api.UserPage:
        """Users of the caller's tenant (admins only)."""
        return await accounts.list_tenant_users(message)

    @on(api.ADD_TENANT_USER)
    @replies(api.AddTenantUser)
    async def add_tenant_user(message: api.AddTenantUser) -> api.UserPublic:
        """Add a user to the caller's tenant (admins only)."""
        return await accounts.add_tenant_user(message)


def published_after_retire(access_ttl_seconds: int, leeway_seconds: int) -> timedelta:
    return timedelta(seconds=access_ttl_seconds + leeway_seconds)
