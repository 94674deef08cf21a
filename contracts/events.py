"""The base domain event carried on JetStream.

Delivery is at least once. Publishers set ``Nats-Msg-Id`` to the event id, so JetStream drops a
re-publish inside its duplicate window (2 minutes); an outbox may re-publish later than that (the
bus was down for longer), so every consumer must be idempotent by ``Event.id``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, Field


class Actor(BaseModel):
    kind: Literal["human", "agent", "system"] = "system"
    user_id: UUID | None = None
    agent: str | None = None
    ip: str | None = None
    user_agent: str | None = None


class Event(BaseModel):
    """Every domain event: published with ``Nats-Msg-Id = id`` so JetStream stores it once."""

    id: UUID = Field(default_factory=uuid4)
    type: str = Field(description="Dotted event type, e.g. auth.user_registered.", examples=["auth.login_succeeded"])
    tenant_id: UUID | None = None
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    actor: Actor = Field(default_factory=Actor)
    target: str | None = Field(default=None, description="What the event is about, e.g. user:<id>.")
    outcome: Literal["success", "failure"] = "success"
    trace_id: str | None = Field(default=None, description="W3C trace id of the request that caused it.")
    traceparent: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def subject(self) -> str:
        service, _, name = self.type.partition(".")
        return f"evt.{service}.{name}"
