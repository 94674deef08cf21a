"""Who is calling: set by the gateway after it verified the access token, carried by every request."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, Field


class Caller(BaseModel):
    tenant_id: UUID
    user_id: UUID
    roles: list[str] = Field(default_factory=list)
    session_id: UUID = Field(description="The auth session (device) the access token belongs to.")

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class ClientInfo(BaseModel):
    """What the edge saw of the client; used for audit, throttling and device records."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


class BusRequest(BaseModel):
    """Base of every request message: the verified caller (absent on public routes) and client info."""

    caller: Caller | None = None
    client: ClientInfo = Field(default_factory=ClientInfo)
