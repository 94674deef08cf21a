"""Health ping every service answers on ``rpc.<service>.ping``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Ping(BaseModel):
    echo: str | None = None


class Pong(BaseModel):
    service: str
    instance: str
    status: Literal["ok", "degraded"]
    store: Literal["ok", "unavailable"]
    echo: str | None = None
