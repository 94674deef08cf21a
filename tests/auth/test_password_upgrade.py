"""Password hashes made with older parameters are upgraded at the next successful login."""

from __future__ import annotations

from uuid import UUID

from argon2 import PasswordHasher, Type

from services.auth import repository as repo
from tests.auth.helpers import PASSWORD, login, registered_and_logged_in
from tests.support import Gateway


async def test_a_weaker_hash_is_replaced_at_login(system: Gateway) -> None:
    registered, _ = await registered_and_logged_in(system)
    user_id = UUID(registered["user"]["id"])
    store = system.services["auth"].ctx.store
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID).hash(PASSWORD)

    def weaken(tx: repo.Transaction) -> None:
        user = repo.get_user(tx, user_id)
        assert user is not None
        user.password_hash = weak
        repo.put_user(tx, user)

    await store.run(weaken)
    await login(system, registered["user"]["email"])
    upgraded = await store.run(lambda tx: repo.get_user(tx, user_id))
    assert upgraded is not None
    assert upgraded.password_hash != weak
    assert upgraded.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    await login(system, registered["user"]["email"])
