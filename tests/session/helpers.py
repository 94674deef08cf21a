"""HTTP helpers for session tests: a user with a token, any call with its status, body and headers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import orjson
from multidict import CIMultiDict
from nats.js.errors import NotFoundError

from contracts import subjects
from shared.store import Store, Transaction
from tests.auth.helpers import add_member, login, registered_and_logged_in
from tests.support import Gateway

T = TypeVar("T")


@dataclass
class User:
    id: str
    tenant_id: str
    token: str
    email: str = ""


async def new_user(gateway: Gateway) -> User:
    """A newly registered user (admin of a new tenant), logged in."""
    registered, tokens = await registered_and_logged_in(gateway)
    return User(
        registered["user"]["id"], registered["tenant"]["id"], tokens["access_token"], registered["user"]["email"]
    )


async def member_of(gateway: Gateway, admin: User, role: str = "member") -> User:
    """A second user of the admin's tenant, logged in."""
    member = await add_member(gateway, admin.token, role)
    tokens = await login(gateway, member["email"])
    return User(member["id"], member["tenant_id"], tokens["access_token"], member["email"])


async def call(
    gateway: Gateway,
    method: str,
    path: str,
    user: User | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> tuple[int, Any, CIMultiDict[str]]:
    all_headers = dict(headers or {})
    if user is not None:
        all_headers["Authorization"] = f"Bearer {user.token}"
    async with gateway.session.request(
        method, f"{gateway.api}{path}", json=body, headers=all_headers, params=params or None
    ) as response:
        payload = await response.json() if response.status != 204 else None
        return response.status, payload, CIMultiDict(response.headers)


async def create(gateway: Gateway, user: User, name: str = "work", **fields: Any) -> dict[str, Any]:
    status, body, _ = await call(gateway, "POST", "/sessions", user, {"name": name, **fields})
    assert status == 201, body
    return dict(body["data"])


async def list_all(gateway: Gateway, user: User, route: str = "/sessions", **params: Any) -> list[dict[str, Any]]:
    """Every page of one of the user's lists (``/sessions`` unless told), following the cursors."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        status, body, _ = await call(gateway, "GET", route, user, **query)
        assert status == 200, body
        items += body["data"]["items"]
        cursor = body["data"]["next_cursor"]
        if cursor is None:
            return items


class Gate:
    """A service's store with every transaction held until all racers have reached one: the race
    the network only sometimes produces, every time."""

    def __init__(self, store: Store, parties: int) -> None:
        self.store = store
        self.barrier = asyncio.Barrier(parties)

    async def run(self, fn: Callable[[Transaction], T]) -> T:
        await self.barrier.wait()
        return await self.store.run(fn)


async def events_on(nats_url: str, subject: str) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """Every event stored on a subject of the events stream, oldest first, with its headers."""
    found: list[tuple[dict[str, Any], dict[str, str]]] = []
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        seq = 1
        while True:
            try:
                msg = await js.get_msg(subjects.EVENTS_STREAM, seq, subject=subject, next=True)
            except NotFoundError:
                return found
            found.append((orjson.loads(msg.data or b"{}"), dict(msg.headers or {})))
            assert msg.seq is not None
            seq = msg.seq + 1
    finally:
        await nc.close()


async def session_events(nats_url: str, session_id: str, subject: str = "evt.session.>") -> list[dict[str, Any]]:
    return [event for event, _ in await events_on(nats_url, subject) if event["target"] == f"session:{session_id}"]
