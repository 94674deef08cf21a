"""Failed-login policy as plain functions: a per-account lock that grows with repetition, a
per-address throttle over a window, and leases for attempts whose password is still being checked.

An attempt is counted *before* its hash is checked (parallel guesses cannot pass the limit), as a
lease with an expiry: a verdict settles it, anything else (a full hash pool, a store error, a
cancellation, a crash) releases it or lets it expire. No path can leave a count behind for good.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

# 2**20 times base already exceeds any sensible cap; the exponent stops here so it can never overflow.
MAX_LOCK_EXPONENT = 20


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int
    base_seconds: float
    max_seconds: float
    ip_limit: int
    ip_window_seconds: float
    lease_seconds: float = 60.0
    failure_reset_seconds: float = 12 * 3600.0
    lock_history_reset_seconds: float = 24 * 3600.0


class AccountFailures(BaseModel):
    consecutive: int = Field(default=0, description="Failed attempts since the last success or lock.")
    locks: int = Field(default=0, description="Locks so far: each one lasts twice as long as the last.")
    locked_until: float = 0.0
    last_failure_at: float = 0.0
    leases: dict[str, float] = Field(default_factory=dict, description="Attempts being checked → lease expiry.")


class AddressFailures(BaseModel):
    window_start: float = 0.0
    count: int = 0
    leases: dict[str, float] = Field(default_factory=dict)


def _live_leases(leases: dict[str, float], now: float) -> dict[str, float]:
    return {attempt: expiry for attempt, expiry in leases.items() if expiry > now}


def current_account(state: AccountFailures, now: float, policy: LockoutPolicy) -> AccountFailures:
    """The state as of ``now``: expired leases gone, old failures and old lock history forgotten."""
    consecutive, locks = state.consecutive, state.locks
    if consecutive and now - state.last_failure_at > policy.failure_reset_seconds:
        consecutive = 0
    if locks and now - max(state.locked_until, state.last_failure_at) > policy.lock_history_reset_seconds:
        locks = 0
    return state.model_copy(
        update={"consecutive": consecutive, "locks": locks, "leases": _live_leases(state.leases, now)}
    )


def lock_remaining(state: AccountFailures, now: float) -> float:
    return max(0.0, state.locked_until - now)


def lock_duration(locks: int, policy: LockoutPolicy) -> float:
    return float(min(policy.base_seconds * 2 ** min(locks, MAX_LOCK_EXPONENT), policy.max_seconds))


def reserve_account_attempt(
    state: AccountFailures, attempt: str, now: float, policy: LockoutPolicy
) -> tuple[AccountFailures, bool]:
    """Lease one attempt before its password is checked; refuse while settled failures plus
    attempts in flight already reach the threshold."""
    state = current_account(state, now, policy)
    if state.consecutive + len(state.leases) >= policy.threshold:
        return state, False
    return state.model_copy(update={"leases": {**state.leases, attempt: now + policy.lease_seconds}}), True


def release_account_attempt(state: AccountFailures, attempt: str) -> AccountFailures:
    """An attempt ended without a verdict on the password: it does not count."""
    return state.model_copy(update={"leases": {k: v for k, v in state.leases.items() if k != attempt}})


def settle_account_failure(
    state: AccountFailures, attempt: str, now: float, policy: LockoutPolicy
) -> tuple[AccountFailures, bool]:
    """A wrong password: one more consecutive failure, and a lock when they reach the threshold.
    The new state, and whether this failure locked the account."""
    state = release_account_attempt(current_account(state, now, policy), attempt)
    consecutive = state.consecutive + 1
    if consecutive < policy.threshold:
        return state.model_copy(update={"consecutive": consecutive, "last_failure_at": now}), False
    locked = state.model_copy(
        update={
            "consecutive": 0,
            "locks": state.locks + 1,
            "locked_until": now + lock_duration(state.locks, policy),
            "last_failure_at": now,
        }
    )
    return locked, True


def settle_account_success(state: AccountFailures, attempt: str) -> AccountFailures:
    """The count starts over; the lock history is kept so a later burst locks for longer."""
    return release_account_attempt(state, attempt).model_copy(update={"consecutive": 0})


def record_account_failure(
    state: AccountFailures, now: float, policy: LockoutPolicy, attempt: str = "once"
) -> tuple[AccountFailures, bool]:
    """One failed attempt from start to end (reserve, then settle)."""
    reserved, _ = reserve_account_attempt(state, attempt, now, policy)
    return settle_account_failure(reserved, attempt, now, policy)


# Per address.
def current_address(state: AddressFailures, now: float, policy: LockoutPolicy) -> AddressFailures:
    if now - state.window_start > policy.ip_window_seconds:
        return AddressFailures(window_start=now, count=0, leases=_live_leases(state.leases, now))
    return state.model_copy(update={"leases": _live_leases(state.leases, now)})


def address_remaining(state: AddressFailures, now: float, policy: LockoutPolicy) -> float:
    """Seconds until this address may try again (0: it may)."""
    state = current_address(state, now, policy)
    if state.count >= policy.ip_limit:
        return max(1.0, state.window_start + policy.ip_window_seconds - now)
    if state.count + len(state.leases) >= policy.ip_limit:
        return 1.0  # attempts in flight fill the allowance: one of them will settle shortly
    return 0.0


def reserve_address_attempt(state: AddressFailures, attempt: str, now: float, policy: LockoutPolicy) -> AddressFailures:
    state = current_address(state, now, policy)
    return state.model_copy(update={"leases": {**state.leases, attempt: now + policy.lease_seconds}})


def release_address_attempt(state: AddressFailures, attempt: str) -> AddressFailures:
    return state.model_copy(update={"leases": {k: v for k, v in state.leases.items() if k != attempt}})


def settle_address_failure(state: AddressFailures, attempt: str, now: float, policy: LockoutPolicy) -> AddressFailures:
    state = release_address_attempt(current_address(state, now, policy), attempt)
    return state.model_copy(update={"count": state.count + 1})


def record_address_failure(state: AddressFailures, now: float, policy: LockoutPolicy) -> AddressFailures:
    return settle_address_failure(reserve_address_attempt(state, "once", now, policy), "once", now, policy)


def address_forgettable(state: AddressFailures, now: float, policy: LockoutPolicy) -> bool:
    """Nothing in flight and the window over: the record says nothing any more."""
    return now - state.window_start > policy.ip_window_seconds and not _live_leases(state.leases, now)


# A plain counter over a window (registrations per address).
class WindowCount(BaseModel):
    window_start: float = 0.0
    count: int = 0


def window_remaining(state: WindowCount, now: float, limit: int, window: float) -> float:
    if now - state.window_start > window or state.count < limit:
        return 0.0
    return max(1.0, state.window_start + window - now)


def count_in_window(state: WindowCount, now: float, window: float) -> WindowCount:
    if now - state.window_start > window:
        return WindowCount(window_start=now, count=1)
    return state.model_copy(update={"count": state.count + 1})
