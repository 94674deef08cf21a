"""Workspaces follow auth events: one per user however often the event comes, removed with the user."""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import UUID, uuid4

import nats as nats_client

from contracts import auth, subjects
from contracts import provisioning as api
from contracts.events import Event
from shared.store import Transaction
from tests.provisioning.helpers import stream_messages, wait_status
from tests.session.helpers import new_user
from tests.support import Gateway, NatsServer


async def publish(nats: NatsServer, event: Event, msg_id: str | None = None) -> None:
    nc = await nats_client.connect(nats.url)
    try:
        await nc.jetstream().publish(
            event.subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": msg_id or str(event.id)}
        )
    finally:
        await nc.close()


async def workspace_events(nats: NatsServer, workspace_id: str) -> list[str]:
    found = await stream_messages(nats.url, subjects.EVENTS_STREAM, "evt.workspace.>")
    return [e["type"] for e, _ in found if e["target"] == f"workspace:{workspace_id}"]


async def test_a_duplicated_or_repeated_registration_makes_one_workspace(system: Gateway, nats: NatsServer) -> None:
    tenant, user = uuid4(), uuid4()
    registered = Event(type=auth.USER_REGISTERED, tenant_id=tenant, data={"user_id": str(user)})
    await publish(nats, registered)
    await publish(nats, registered, msg_id=f"{registered.id}-redelivered")  # past JetStream's duplicate window
    await publish(nats, Event(type=auth.USER_REGISTERED, tenant_id=tenant, data={"user_id": str(user)}))
    workspace_id = str(api.workspace_id(tenant, user))
    ctx = system.services["provisioning"].ctx

    def records(tx: Transaction) -> list[tuple[bytes, bytes]]:
        from services.provisioning import repository as repo

        return tx.get_range(repo.WORKSPACE.range().start, repo.WORKSPACE.range().stop)

    deadline = asyncio.get_running_loop().time() + 15
    while "workspace.provisioned" not in await workspace_events(nats, workspace_id):
        assert asyncio.get_running_loop().time() < deadline, await workspace_events(nats, workspace_id)
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # time for the later deliveries to be handled (and do nothing)
    assert await workspace_events(nats, workspace_id) == ["workspace.requested", "workspace.provisioned"]
    assert len(await ctx.store.run(records)) == 1
    monitors = system.services["provisioning"].ctx.components["provisioning"].backend.monitors
    assert list(monitors.children) == [UUID(workspace_id)]


async def test_removing_the_user_stops_the_monitor_and_deletes_the_directory(system: Gateway, nats: NatsServer) -> None:
    user = await new_user(system)
    workspace = await wait_status(system, user, "ready")
    root = Path(workspace["details"]["path"])
    (root / "notes.txt").write_text("mine")
    backend = system.services["provisioning"].ctx.components["provisioning"].backend
    child = backend.monitors.children[UUID(workspace["id"])]
    assert child.process is not None and child.process.poll() is None
    removed = Event(
        type=auth.USER_REMOVED,
        tenant_id=UUID(user.tenant_id),
        data=auth.UserRemovedData(user_id=UUID(user.id)).model_dump(mode="json"),
    )
    await publish(nats, removed)
    deadline = asyncio.get_running_loop().time() + 15
    while "workspace.deprovisioned" not in await workspace_events(nats, workspace["id"]):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.1)
    assert not root.exists()  # noqa: ASYNC240
    assert child.process.poll() is not None, "the monitor was stopped"
    assert UUID(workspace["id"]) not in backend.monitors.children
    events = await workspace_events(nats, workspace["id"])
    assert events == ["workspace.requested", "workspace.provisioned", "workspace.deprovisioned"]
    # The removed user's token may still be valid for minutes: their workspace reads as deleted.
    from tests.provisioning.helpers import workspace_of

    status, body = await workspace_of(system, user)
    assert status == 200 and body["data"]["status"] == "deleted"


async def test_a_deleted_tenant_removes_every_workspace_it_had(system: Gateway, nats: NatsServer) -> None:
    tenant, users = uuid4(), [uuid4(), uuid4()]
    for user in users:
        await publish(nats, Event(type=auth.USER_REGISTERED, tenant_id=tenant, data={"user_id": str(user)}))
    ids = [str(api.workspace_id(tenant, user)) for user in users]
    deadline = asyncio.get_running_loop().time() + 20
    for workspace_id in ids:
        while "workspace.provisioned" not in await workspace_events(nats, workspace_id):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
    deleted = auth.TenantDeletedData(user_ids=users).model_dump(mode="json")
    await publish(nats, Event(type=auth.TENANT_DELETED, tenant_id=tenant, data=deleted))
    for workspace_id in ids:
        while "workspace.deprovisioned" not in await workspace_events(nats, workspace_id):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
    data_dir = system.services["provisioning"].ctx.settings.data_dir
    assert not any((data_dir / "workspaces" / str(tenant)).glob("*"))


async def test_the_workspace_consumer_is_handed_no_login_events(system: Gateway, nats: NatsServer) -> None:
    """Logins are most of the auth events; provisioning acts on three others. Delivered to it, each
    login was received, decoded and acknowledged for nothing (2.4 ms of its CPU per login)."""
    from services.provisioning.handlers import AUTH_EVENTS_DURABLE, AUTH_SUBJECTS

    nc = await nats_client.connect(nats.url)
    try:
        js = nc.jetstream()
        before = await js.consumer_info(subjects.EVENTS_STREAM, AUTH_EVENTS_DURABLE)
        assert sorted(before.config.filter_subjects or []) == sorted(AUTH_SUBJECTS)
        await publish(nats, Event(type=auth.LOGIN_SUCCEEDED, tenant_id=uuid4(), data={"user_id": str(uuid4())}))
        await asyncio.sleep(0.5)
        after = await js.consumer_info(subjects.EVENTS_STREAM, AUTH_EVENTS_DURABLE)
        assert after.num_pending == 0
        assert after.delivered.consumer_seq == before.delivered.consumer_seq
    finally:
        await nc.close()


async def test_a_durable_made_over_every_auth_event_is_narrowed_in_place(nats: NatsServer) -> None:
    """A deployment from before keeps its durable (and what it acknowledged); only its filter changes."""
    from nats.js.api import ConsumerConfig

    from services.provisioning.handlers import AUTH_EVENTS_DURABLE, AUTH_SUBJECTS, ensure_auth_consumer
    from shared.bus import create_streams

    nc = await nats_client.connect(nats.url)
    try:
        js = nc.jetstream()
        await create_streams(js)
        await js.add_consumer(
            subjects.EVENTS_STREAM,
            config=ConsumerConfig(durable_name=AUTH_EVENTS_DURABLE, filter_subject=subjects.event("auth", "*")),
        )
        registered = Event(type=auth.USER_REGISTERED, tenant_id=uuid4(), data={"user_id": str(uuid4())})
        await publish(nats, registered)
        pull = await js.pull_subscribe("", AUTH_EVENTS_DURABLE, stream=subjects.EVENTS_STREAM)
        (message,) = await pull.fetch(1, timeout=5)
        await message.ack_sync()
        await publish(nats, Event(type=auth.LOGIN_SUCCEEDED, tenant_id=uuid4(), data={"user_id": str(uuid4())}))

        await ensure_auth_consumer(js)

        info = await js.consumer_info(subjects.EVENTS_STREAM, AUTH_EVENTS_DURABLE)
        assert sorted(info.config.filter_subjects or []) == sorted(AUTH_SUBJECTS)
        assert info.ack_floor.consumer_seq == 1  # what it had acknowledged is kept: no registration again
        assert info.num_pending == 0  # the login after it is not for this consumer
        await ensure_auth_consumer(js)  # already narrow: left as it is
    finally:
        await nc.close()
