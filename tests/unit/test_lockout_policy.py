"""The failed-login policy as plain functions."""

from __future__ import annotations

from services.auth.lockout import (
    AccountFailures,
    AddressFailures,
    LockoutPolicy,
    address_remaining,
    lock_remaining,
    record_account_failure,
    record_account_success,
    record_address_failure,
)

POLICY = LockoutPolicy(threshold=3, base_seconds=60, max_seconds=300, ip_limit=2, ip_window_seconds=100)


def test_the_threshold_failure_locks_for_the_base_time() -> None:
    state = AccountFailures()
    for _ in range(2):
        state, locked = record_account_failure(state, 1000.0, POLICY)
        assert not locked
    state, locked = record_account_failure(state, 1000.0, POLICY)
    assert locked and lock_remaining(state, 1000.0) == 60
    assert lock_remaining(state, 1061.0) == 0


def test_each_lock_doubles_up_to_the_cap() -> None:
    state = AccountFailures()
    durations = []
    for round_ in range(5):
        now = 10_000.0 * (round_ + 1)
        for _ in range(3):
            state, _ = record_account_failure(state, now, POLICY)
        durations.append(lock_remaining(state, now))
    assert durations == [60, 120, 240, 300, 300]


def test_success_resets_the_count_but_keeps_the_history() -> None:
    state, _ = record_account_failure(AccountFailures(locks=2), 0.0, POLICY)
    state = record_account_success(state)
    assert state.consecutive == 0 and state.locks == 2


def test_address_throttle_uses_a_window() -> None:
    state = AddressFailures()
    state = record_address_failure(state, 0.0, POLICY)
    assert address_remaining(state, 1.0, POLICY) == 0
    state = record_address_failure(state, 1.0, POLICY)
    assert address_remaining(state, 1.0, POLICY) == 99
    state = record_address_failure(state, 150.0, POLICY)
    assert state.count == 1 and address_remaining(state, 150.0, POLICY) == 0


def test_attempts_in_flight_are_capped_at_the_threshold() -> None:
    from services.auth.lockout import reserve_account_attempt, settle_account_failure

    state = AccountFailures()
    admitted = 0
    for _ in range(5):
        state, ok = reserve_account_attempt(state, POLICY)
        admitted += ok
    assert admitted == 3
    state, locked = settle_account_failure(state, 50.0, POLICY)
    assert locked and lock_remaining(state, 50.0) == 60
    state, locked = settle_account_failure(state, 50.0, POLICY)
    assert not locked and state.locks == 1
