"""Events of real auth and session flows land in the tenant's trail, in order, with who did them."""

from __future__ import annotations

import itertools

from services.audit.chain import GENESIS_HASH, check_record
from tests.audit.helpers import publish, records, synthetic, wait_for
from tests.session.helpers import call, create, new_user
from tests.support import Gateway, NatsServer


async def test_auth_and_session_events_become_records_in_order_with_their_actors(system: Gateway) -> None:
    admin = await new_user(system)  # registered, then logged in
    status, _, _ = await call(
        system, "POST", "/auth/login", None, {"email": admin.email, "password": "wrong-password!"}
    )
    assert status == 401
    session = await create(system, admin, "audited")

    found = await wait_for(system, admin, 4)
    types = [record["type"] for record in found]
    assert types == ["auth.user_registered", "auth.login_succeeded", "auth.login_failed", "session.created"]
    assert [record["seq"] for record in found] == [1, 2, 3, 4]
    assert found[0]["prev_hash"] == GENESIS_HASH
    for before, after in itertools.pairwise(found):
        assert after["prev_hash"] == before["hash"]
    assert all(check_record(record) for record in found)
    assert all(record["tenant_id"] == admin.tenant_id for record in found)
    login = found[1]
    assert login["actor"]["kind"] == "human"
    assert login["actor"]["user_id"] == admin.id
    assert login["actor"]["ip"] == "127.0.0.1"
    assert login["actor"]["user_agent"]
    assert login["target"] == f"user:{admin.id}"
    assert found[2]["outcome"] == "failure"
    assert found[3]["target"] == f"session:{session['id']}"
    assert all(record["occurred_at"] <= record["recorded_at"] for record in found)
    # No secret reaches the trail, whatever the events carried.
    assert "password" not in str(found) and "token" not in "".join(str(r["details"]) for r in found)


async def test_a_redelivered_event_is_recorded_once(system: Gateway, nats: NatsServer) -> None:
    admin = await new_user(system)
    await wait_for(system, admin, 2)
    event = synthetic(admin.tenant_id, admin.id, type="test.duplicated")
    # Without Nats-Msg-Id the stream keeps both copies: the consumer sees the same event id twice.
    await publish(nats.url, [event, event], msg_ids=False)
    await publish(nats.url, [synthetic(admin.tenant_id, admin.id, type="test.after")])
    found = await wait_for(system, admin, 4)
    assert [r["type"] for r in found] == [
        "auth.user_registered",
        "auth.login_succeeded",
        "test.duplicated",
        "test.after",
    ]
    assert [r["id"] for r in found].count(str(event.id)) == 1


async def test_secrets_in_event_data_are_not_recorded(system: Gateway, nats: NatsServer) -> None:
    admin = await new_user(system)
    data = {"password": "hunter22!", "nested": {"refresh_token": "r", "kept": 1, "api_key": "k"}, "ratio": 0.5}
    await publish(nats.url, [synthetic(admin.tenant_id, admin.id, type="test.secretive", data=data)])
    found = await wait_for(system, admin, 1, type="test.secretive")
    assert found[0]["details"] == {"nested": {"kept": 1}, "ratio": "0.5"}
    assert (await records(system, admin, type="auth."))[0]["type"] == "auth.user_registered"
