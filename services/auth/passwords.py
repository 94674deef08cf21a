"""Argon2id hashing on a bounded thread pool, never on the event loop.

argon2-cffi releases the GIL while hashing, so threads use every core. The pool's queue is
bounded: past ``queue_limit`` waiting hashes, callers are refused at once (429) instead of
waiting in a convoy that would push every login past its deadline. Part of that capacity is kept
for logins: registrations (and other new hashes) cannot take the last ``login_reserve`` places, so
a flood of sign-ups never locks existing users out.
"""

from __future__ import annotations

import asyncio
import hmac
import os
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from contracts.envelope import ErrorCode
from shared.errors import ServiceError


class PasswordHashing:
    def __init__(
        self,
        *,
        memory_kib: int,
        time_cost: int,
        parallelism: int,
        workers: int = 0,
        queue_limit: int = 64,
        login_reserve: int = 0,
    ) -> None:
        self.hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID)
        self.workers = workers or os.cpu_count() or 1
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="argon2")
        self.capacity = self.workers + queue_limit
        self.login_reserve = min(login_reserve, self.capacity - 1)
        self._in_use = 0
        self._dummy_hash = self.hasher.hash(os.urandom(16).hex())

    def has_capacity(self, *, for_login: bool = True) -> bool:
        limit = self.capacity if for_login else self.capacity - self.login_reserve
        return self._in_use < limit

    def ensure_capacity(self, *, for_login: bool = True) -> None:
        """Refuse at once (429) when the pool is full, before any work is counted or stored."""
        if not self.has_capacity(for_login=for_login):
            message = "too many logins in progress" if for_login else "too many sign-ups in progress"
            raise ServiceError(ErrorCode.RATE_LIMITED, f"{message}; retry shortly", retry_after=1)

    async def _run(self, fn: object, *args: str, for_login: bool) -> object:
        self.ensure_capacity(for_login=for_login)
        self._in_use += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, fn, *args)  # type: ignore[arg-type]
        finally:
            self._in_use -= 1

    async def hash(self, password: str, *, for_login: bool = False) -> str:
        """A new hash: a registration or a password change by default, which may not use the login reserve."""
        return str(await self._run(self.hasher.hash, password, for_login=for_login))

    def _verify_sync(self, stored_hash: str, password: str) -> bool:
        try:
            return bool(self.hasher.verify(stored_hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Verify; without a stored hash, verify against a dummy so both cost the same time."""
        ok = await self._run(self._verify_sync, stored_hash or self._dummy_hash, password, for_login=True)
        return bool(ok) and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        return self.hasher.check_needs_rehash(stored_hash)

    def close(self) -> None:
        self._executor.shutdown(wait=False)


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
