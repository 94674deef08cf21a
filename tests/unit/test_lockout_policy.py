"""The failed-login policy as plain functions: locks, windows, and leases for attempts in flight."""

from __future__ import annotations

from services.auth.lockout import (
    AccountFailures,
    AddressFailures,
    LockoutPolicy,
    address_forgettable,
    address_remaining,
    lock_remaining,
    record_account_failure,
    record_address_failure,
    release_account_attempt,
    release_address_attempt,
    reserve_account_attempt,
    reserve_address_attempt,
    settle_account_failure,
    settle_account_success,
)

POLICY = LockoutPolicy(
    threshold=3,
    base_seconds=60,
    max_seconds=300,
    ip_limit=2,
    ip_window_seconds=100,
    lease_seconds=30,
    failure_reset_seconds=1000,
    lock_history_reset_seconds=5000,
)


def test_the_threshold_failure_locks_for_the_base_time() -> None:
    state = AccountFailures()
    for _ in range(2):
        state, locked = record_account_failure(state, 1000.0, POLICY)
        assert not locked
    state, locked = record_account_failure(state, 1000.0, POLICY)
    assert locked
    assert lock_remaining(state, 1000.0) == 60
    assert lock_remaining(state, 1061.0) == 0


def test_each_lock_doubles_up_to_the_cap() -> None:
    state = AccountFailures()
    durations = []
    for round_ in range(5):
        now = 1_000.0 * (round_ + 1)
        for _ in range(3):
            state, _ = record_account_failure(state, now, POLICY)
        durations.append(lock_remaining(state, now))
    assert durations == [60, 120, 240, 300, 300]


def test_a_huge_lock_count_cannot_overflow() -> None:
    state, locked = record_account_failure(AccountFailures(consecutive=2, locks=5000, last_failure_at=0), 1.0, POLICY)
    assert locked
    assert lock_remaining(state, 1.0) == 300


def test_success_resets_the_count_but_keeps_the_history() -> None:
    state, _ = reserve_account_attempt(AccountFailures(consecutive=2, locks=2, last_failure_at=0), "a", 1.0, POLICY)
    state = settle_account_success(state, "a")
    assert state.consecutive == 0
    assert state.locks == 2
    assert state.leases == {}


def test_failures_decay_after_the_reset_window() -> None:
    state, _ = record_account_failure(AccountFailures(), 0.0, POLICY)
    state, _ = record_account_failure(state, 0.0, POLICY)
    state, locked = record_account_failure(state, 1001.0, POLICY)
    assert not locked
    assert state.consecutive == 1


def test_the_lock_history_decays_after_a_quiet_period() -> None:
    state = AccountFailures(locks=4, locked_until=100.0, last_failure_at=50.0)
    for _ in range(3):
        state, _ = record_account_failure(state, 6000.0, POLICY)
    assert lock_remaining(state, 6000.0) == 60


def test_attempts_in_flight_are_capped_at_the_threshold() -> None:
    state = AccountFailures()
    admitted = []
    for n in range(5):
        state, ok = reserve_account_attempt(state, f"a{n}", 50.0, POLICY)
        admitted.append(ok)
    assert admitted == [True, True, True, False, False]
    for n in range(3):
        state, locked = settle_account_failure(state, f"a{n}", 50.0, POLICY)
    assert locked
    assert lock_remaining(state, 50.0) == 60
    assert state.leases == {}


def test_a_released_attempt_does_not_count() -> None:
    state = AccountFailures()
    for n in range(3):
        state, _ = reserve_account_attempt(state, f"a{n}", 0.0, POLICY)
        state = release_account_attempt(state, f"a{n}")
    state, ok = reserve_account_attempt(state, "next", 0.0, POLICY)
    assert ok
    assert state.consecutive == 0


def test_a_lease_never_settled_expires() -> None:
    state = AccountFailures()
    for n in range(3):
        state, _ = reserve_account_attempt(state, f"lost{n}", 0.0, POLICY)
    assert not reserve_account_attempt(state, "blocked", 29.0, POLICY)[1]
    assert reserve_account_attempt(state, "later", 31.0, POLICY)[1]


def test_address_throttle_uses_a_window() -> None:
    state = AddressFailures()
    state = record_address_failure(state, 0.0, POLICY)
    assert address_remaining(state, 1.0, POLICY) == 0
    state = record_address_failure(state, 1.0, POLICY)
    assert address_remaining(state, 1.0, POLICY) == 99
    state = record_address_failure(state, 150.0, POLICY)
    assert state.count == 1
    assert address_remaining(state, 150.0, POLICY) == 0


def test_address_leases_are_released_and_old_records_forgettable() -> None:
    state = reserve_address_attempt(AddressFailures(), "a", 0.0, POLICY)
    state = reserve_address_attempt(state, "b", 0.0, POLICY)
    assert address_remaining(state, 0.0, POLICY) == 1.0
    state = release_address_attempt(release_address_attempt(state, "a"), "b")
    assert address_remaining(state, 0.0, POLICY) == 0
    assert not address_forgettable(state, 50.0, POLICY)
    assert address_forgettable(state, 101.0, POLICY)
