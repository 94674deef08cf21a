"""Route declarations: one table that both aiohttp and the OpenAPI document are built from."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, create_model

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Access = Literal["public", "user", "admin"]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    access: Access = "user"
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    tag: str = "ops"
    enveloped: bool = True
    query: tuple[str, ...] = field(default_factory=tuple)
    headers: tuple[str, ...] = field(default_factory=tuple)  # optional request headers it reads
    response_headers: tuple[str, ...] = field(default_factory=tuple)
    description: str | None = None
    media_type: str = "application/json"  # of the success body (NDJSON exports stream another)
    # Answered by the gateway alone (no bus request, no token): no trace context is made current for
    # it, though its response still names a trace and a request id (services/gateway/edge.py).
    local: bool = False


def body_of(model: type[BaseModel], *, without: tuple[str, ...] = (), closed: bool = False) -> type[BaseModel]:
    """The request body model as clients see it: without the identity fields the gateway sets, nor
    the fields it takes from the path or headers. ``closed``: a field it does not name is refused
    (its schema says ``additionalProperties: false``; the route checks with ``unknown_fields``)."""
    hidden = {"caller", "client", *without}
    fields = {name: (info.annotation, info) for name, info in model.model_fields.items() if name not in hidden}
    config = ConfigDict(extra="forbid") if closed else None
    return create_model(f"{model.__name__}Body", __config__=config, **fields)  # type: ignore[call-overload,no-any-return]


def unknown_fields(body: dict[str, object], model: type[BaseModel] | None) -> list[str]:
    """The fields of ``body`` that the body model ``model`` (None: no body) does not name, sorted."""
    allowed = model.model_fields.keys() if model is not None else set()
    return sorted(key for key in body if key not in allowed)
