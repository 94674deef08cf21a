"""One trace spans gateway → bus → service: the event a request causes carries its trace id.

These run with the gateway trusting the caller's trace context (as behind a tracing proxy); an
untrusted caller's trace is not continued (tests/gateway/test_edge_hygiene.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tests.auth.helpers import PASSWORD, unique_email
from tests.support import Gateway


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"gateway_trust_client_trace": True}


async def test_the_trace_id_of_a_request_reaches_the_service_and_its_events(system: Gateway) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    email = unique_email()
    async with system.session.post(
        f"{system.api}/auth/register",
        json={"email": email, "password": PASSWORD},
        headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
    ) as response:
        assert response.status == 201
        user_id = (await response.json())["data"]["user"]["id"]
        assert response.headers["traceparent"].split("-")[1] == trace_id
    js = await system.admin_js()
    subscription = await js.subscribe("evt.auth.user_registered", ordered_consumer=True)
    try:
        found = None
        while found is None:
            message = await asyncio.wait_for(subscription.next_msg(timeout=2), 5)
            event = orjson.loads(message.data)
            if event["data"]["user_id"] == user_id:
                found = event
    finally:
        await subscription.unsubscribe()
    assert found["trace_id"] == trace_id


async def test_events_staged_inside_store_transactions_carry_the_trace_id(system: Gateway) -> None:
    email = unique_email()
    async with system.session.post(f"{system.api}/auth/register", json={"email": email, "password": PASSWORD}) as r:
        user_id = (await r.json())["data"]["user"]["id"]
    trace_id = "1bf92f3577b34da6a3ce929d0e0e4799"
    async with system.session.post(
        f"{system.api}/auth/login",
        json={"email": email, "password": PASSWORD},
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    ) as response:
        assert response.status == 200
    js = await system.admin_js()
    subscription = await js.subscribe("evt.auth.login_succeeded", ordered_consumer=True)
    try:
        found = None
        while found is None:
            event = orjson.loads((await asyncio.wait_for(subscription.next_msg(timeout=2), 5)).data)
            if event["actor"]["user_id"] == user_id:
                found = event
    finally:
        await subscription.unsubscribe()
    assert found["trace_id"] == trace_id
