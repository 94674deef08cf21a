"""Password attempts against the lockout: lease before the hash is checked, settle on a verdict,
release on every other way out (``async with`` guarantees it)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from contracts import auth as api
from contracts.envelope import ErrorCode
from contracts.identity import BusRequest
from services.auth import lockout
from services.auth import repository as repo
from services.auth.context import AuthContext, anonymous, platform
from shared.errors import ServiceError
from shared.store import Transaction

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """One leased attempt at a password: for an account (``user_id``), from an address, or both."""

    ctx: AuthContext
    user_id: uuid.UUID | None
    address: str | None
    id: str
    settled: bool = False
    user: repo.UserRecord | None = None

    def settle_success(self, tx: Transaction) -> None:
        """In the transaction that acts on the verdict: the account's count starts over (the
        caller marks the attempt settled once that transaction committed)."""
        if self.address is not None:
            state = repo.get_address_failures(tx, self.address)
            repo.put_address_failures(tx, self.address, lockout.release_address_attempt(state, self.id))
        if self.user_id is not None:
            failures = repo.get_failures(tx, self.user_id)
            repo.put_failures(tx, self.user_id, lockout.settle_account_success(failures, self.id))

    def release(self, tx: Transaction) -> None:
        """No verdict on the password: the attempt does not count."""
        if self.address is not None:
            state = repo.get_address_failures(tx, self.address)
            repo.put_address_failures(tx, self.address, lockout.release_address_attempt(state, self.id))
        if self.user_id is not None:
            failures = repo.get_failures(tx, self.user_id)
            repo.put_failures(tx, self.user_id, lockout.release_account_attempt(failures, self.id))

    async def fail(self, message: BusRequest, tenant_id: uuid.UUID | None, reason: str) -> None:
        """A wrong password: count it, lock the account at the threshold, audit both."""
        ctx = self.ctx

        def record(tx: Transaction) -> None:
            now = time.time()
            ctx.stage(
                tx,
                api.LOGIN_FAILED,
                message,
                tenant_id=tenant_id,
                user_id=self.user_id,
                outcome="failure",
                data={"reason": reason, "known_account": self.user_id is not None},
                actor=anonymous(message),
            )
            if self.address is not None:
                state = repo.get_address_failures(tx, self.address)
                repo.put_address_failures(
                    tx, self.address, lockout.settle_address_failure(state, self.id, now, ctx.lockout)
                )
            if self.user_id is None:
                return
            failures, locked = lockout.settle_account_failure(
                repo.get_failures(tx, self.user_id), self.id, now, ctx.lockout
            )
            repo.put_failures(tx, self.user_id, failures)
            if locked:
                ctx.stage(
                    tx,
                    api.ACCOUNT_LOCKED,
                    message,
                    tenant_id=tenant_id,
                    user_id=self.user_id,
                    outcome="failure",
                    data={"locked_seconds": round(failures.locked_until - now), "locks": failures.locks},
                    actor=platform(),
                )

        _, staged = await ctx.transact(record)
        self.settled = True
        await ctx.publish_staged(staged)


def refusal(tx: Transaction, ctx: AuthContext, attempt: Attempt, now: float) -> ServiceError | None:
    """Check the limits and lease the attempt in one transaction; the error to answer if refused."""
    policy = ctx.lockout
    if attempt.address is not None:
        addresses = repo.get_address_failures(tx, attempt.address)
        throttled = lockout.address_remaining(addresses, now, policy)
        if throttled > 0:
            return ServiceError(
                ErrorCode.RATE_LIMITED, "too many failed logins from this address", retry_after=math.ceil(throttled)
            )
    if attempt.user_id is not None:
        failures = repo.get_failures(tx, attempt.user_id)
        locked = lockout.lock_remaining(failures, now)
        if locked > 0:
            return ServiceError(
                ErrorCode.ACCOUNT_LOCKED, "the account is temporarily locked", retry_after=math.ceil(locked)
            )
        leased, admitted = lockout.reserve_account_attempt(failures, attempt.id, now, policy)
        if not admitted:
            return ServiceError(
                ErrorCode.RATE_LIMITED, "too many login attempts in progress for this account", retry_after=1
            )
        repo.put_failures(tx, attempt.user_id, leased)
    if attempt.address is not None:
        repo.put_address_failures(
            tx, attempt.address, lockout.reserve_address_attempt(addresses, attempt.id, now, policy)
        )
    return None


@contextlib.asynccontextmanager
async def leased(
    ctx: AuthContext,
    address: str | None,
    find_user: Callable[[Transaction], repo.UserRecord | None],
    known_device_of: uuid.UUID | None = None,
) -> AsyncIterator[Attempt]:
    """Find the (active) user and lease an attempt in one transaction, or raise the refusal; on
    leaving without a verdict, release it. ``attempt.user`` is the user as of the lease.

    ``known_device_of`` is the account a valid device token of the request names: an attempt at
    that very account is neither held nor counted by the per-address throttle (only by the account's
    lockout); at any other account the token changes nothing."""
    ctx.hashing.ensure_capacity()  # a full pool refuses before anything is counted
    attempt = Attempt(ctx, None, address, secrets.token_hex(8))

    def lease(tx: Transaction) -> ServiceError | None:
        user = find_user(tx)
        attempt.user = user if user is not None and user.is_active else None
        attempt.user_id = attempt.user.id if attempt.user else None
        attempt.address = address
        if known_device_of is not None and attempt.user_id == known_device_of:
            attempt.address = None
        return refusal(tx, ctx, attempt, time.time())

    refused = await ctx.store.run(lease)
    if refused is not None:
        raise refused
    try:
        yield attempt
    finally:
        if not attempt.settled:
            # Shielded: a cancelled request must still give its lease back (it would expire anyway).
            with contextlib.suppress(Exception):
                await asyncio.shield(ctx.store.run(attempt.release))


async def forget_stale_addresses(ctx: AuthContext, stop: asyncio.Event, interval: float = 60.0) -> None:
    """Sweep per-address records whose window is over, a batch at a time, so they do not pile up."""
    after: bytes | None = None
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        try:
            after = await ctx.store.run(functools.partial(_sweep, ctx=ctx, after=after, now=time.time()))
        except Exception as error:
            log.warning("per-address failure sweep failed (%s); will retry", error)


def _sweep(tx: Transaction, ctx: AuthContext, after: bytes | None, now: float, batch: int = 500) -> bytes | None:
    rows = repo.stale_addresses(tx, after, batch)
    for key, state in rows:
        if lockout.address_forgettable(state, now, ctx.lockout):
            tx.clear(key)
    return rows[-1][0] if len(rows) == batch else None
