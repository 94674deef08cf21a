"""Who sees which records: members only those about themselves, admins only their own tenant's."""

from __future__ import annotations

from tests.audit.helpers import publish, records, synthetic, wait_for
from tests.session.helpers import member_of, new_user
from tests.support import Gateway, NatsServer


async def test_a_member_sees_only_records_about_themselves(system: Gateway, nats: NatsServer) -> None:
    admin = await new_user(system)
    member = await member_of(system, admin)
    await publish(
        nats.url,
        [
            synthetic(admin.tenant_id, admin.id, 1, type="test.by_admin"),
            synthetic(admin.tenant_id, admin.id, 2, type="test.about_member", target=f"user:{member.id}"),
            synthetic(admin.tenant_id, None, 3, type="test.by_system"),
        ],
    )
    everything = await wait_for(system, admin, 7)  # registered, login, member added, member login, three
    assert len(everything) == 7
    mine = await wait_for(system, member, 3)
    assert {r["type"] for r in mine} == {"auth.user_registered", "auth.login_succeeded", "test.about_member"}
    assert all(r["actor"]["user_id"] == member.id or r["target"] == f"user:{member.id}" for r in mine)
    # A member naming another actor still sees nothing that is not about them.
    assert await records(system, member, actor=admin.id) == [r for r in mine if r["actor"]["user_id"] == admin.id]


async def test_an_admin_never_sees_another_tenants_records(system: Gateway, nats: NatsServer) -> None:
    alice = await new_user(system)
    bob = await new_user(system)
    await publish(nats.url, [synthetic(bob.tenant_id, bob.id, i, type="test.bobs") for i in range(5)])
    await wait_for(system, bob, 7)
    seen = await wait_for(system, alice, 2)
    assert all(r["tenant_id"] == alice.tenant_id for r in seen)
    assert await records(system, alice, type="test.bobs") == []
    assert await records(system, alice, actor=bob.id) == []


async def test_filters_and_cursors_page_through_the_trail(system: Gateway, nats: NatsServer) -> None:
    admin = await new_user(system)
    await publish(nats.url, [synthetic(admin.tenant_id, admin.id, i, type="test.paged") for i in range(25)])
    await wait_for(system, admin, 27)
    paged = await records(system, admin, type="test.paged", limit=10)
    assert [r["details"]["index"] for r in paged] == list(range(25))
    assert len(await records(system, admin, type="auth.")) == 2
    middle = paged[10]["occurred_at"]
    assert len(await records(system, admin, since=middle, type="test.paged")) == 15
    assert len(await records(system, admin, until=middle, type="test.paged")) == 10
