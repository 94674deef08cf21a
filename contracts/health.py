"""Health ping every service answers on ``rpc.<service>.ping``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Ping(BaseModel):
    echo: str | None = None


class ServiceHealth(BaseModel):
    """What the public ping route shows of a service: its name and state, nothing about where it runs."""

    service: str
    status: Literal["ok", "degraded"]
    store: Literal["ok", "unavailable"]
    echo: str | None = None


class Pong(ServiceHealth):
    store_stats: dict[str, float] = Field(
        default_factory=dict,
        description="The store's own figures (embedded: WAL bytes and bound, checkpoints, seconds since the last).",
    )
    instance: str = Field(
        description="Host and process of the replica that answered: for operators on the bus and in logs, "
        "never on a public route."
    )
