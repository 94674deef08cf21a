"""Failed-login policy as plain functions: per-account lock that grows with repetition,
per-address throttle over a sliding window."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int
    base_seconds: float
    max_seconds: float
    ip_limit: int
    ip_window_seconds: float


class AccountFailures(BaseModel):
    consecutive: int = 0
    locks: int = 0
    locked_until: float = 0.0


class AddressFailures(BaseModel):
    window_start: float = 0.0
    count: int = 0


def lock_remaining(state: AccountFailures, now: float) -> float:
    return max(0.0, state.locked_until - now)


def reserve_account_attempt(state: AccountFailures, policy: LockoutPolicy) -> tuple[AccountFailures, bool]:
    """Count an attempt before its password is checked; refuse it while ``threshold`` attempts are
    already counted (failed, or still being checked), so parallel guesses cannot exceed the limit."""
    if state.consecutive >= policy.threshold:
        return state, False
    return state.model_copy(update={"consecutive": state.consecutive + 1}), True


def settle_account_failure(state: AccountFailures, now: float, policy: LockoutPolicy) -> tuple[AccountFailures, bool]:
    """A counted attempt failed: lock once the count has reached the threshold. The new state, and
    whether this failure locked the account."""
    if state.consecutive < policy.threshold:
        return state, False
    duration = min(policy.base_seconds * 2**state.locks, policy.max_seconds)
    return AccountFailures(consecutive=0, locks=state.locks + 1, locked_until=now + duration), True


def record_account_failure(state: AccountFailures, now: float, policy: LockoutPolicy) -> tuple[AccountFailures, bool]:
    """One failed attempt from start to end (reserve, then settle)."""
    reserved, _ = reserve_account_attempt(state, policy)
    return settle_account_failure(reserved, now, policy)


def record_account_success(state: AccountFailures) -> AccountFailures:
    """The count starts over; the lock history is kept so a later burst locks for longer."""
    return state.model_copy(update={"consecutive": 0})


def release_address_attempt(state: AddressFailures) -> AddressFailures:
    """A reserved attempt that succeeded does not count against the address."""
    return state.model_copy(update={"count": max(0, state.count - 1)})


def address_remaining(state: AddressFailures, now: float, policy: LockoutPolicy) -> float:
    if state.count < policy.ip_limit:
        return 0.0
    return max(0.0, state.window_start + policy.ip_window_seconds - now)


def record_address_failure(state: AddressFailures, now: float, policy: LockoutPolicy) -> AddressFailures:
    if now - state.window_start > policy.ip_window_seconds:
        return AddressFailures(window_start=now, count=1)
    return state.model_copy(update={"count": state.count + 1})
