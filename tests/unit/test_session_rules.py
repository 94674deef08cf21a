"""The rules of a workspace session as plain functions: state machine, updates, access times,
ownership, inputs, cursors and If-Match."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from contracts import session as api
from contracts.envelope import ErrorCode
from contracts.identity import Caller
from services.gateway.routes.sessions import if_match_versions
from services.session import rules
from shared.errors import ServiceError

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
CALLER = Caller(tenant_id=uuid.uuid4(), user_id=uuid.uuid4(), session_id=uuid.uuid4())


def session(**changes: object) -> api.Session:
    return rules.new_session(api.Session, CALLER, name="work", workspace_path=None, now=NOW).model_copy(update=changes)


def code_of(error: pytest.ExceptionInfo[ServiceError]) -> ErrorCode:
    return error.value.code


@pytest.mark.parametrize(
    ("current", "target"),
    [("active", "suspended"), ("suspended", "active"), ("active", "terminated"), ("suspended", "terminated")],
)
def test_the_state_machine_allows_active_suspended_and_the_way_to_terminated(
    current: api.Status, target: api.Status
) -> None:
    rules.check_transition(current, target)


@pytest.mark.parametrize("target", ["active", "suspended"])
def test_terminated_is_final(target: api.Status) -> None:
    with pytest.raises(ServiceError) as error:
        rules.check_transition("terminated", target)
    assert code_of(error) == ErrorCode.INVALID_TRANSITION


def test_an_update_is_one_new_version_and_no_change_is_none() -> None:
    before = session()
    after = rules.updated(before, name="renamed", status="suspended", now=NOW + timedelta(seconds=1))
    assert after is not None
    assert (after.name, after.status, after.version) == ("renamed", "suspended", before.version + 1)
    assert after.updated_at == NOW + timedelta(seconds=1)
    assert rules.updated(before, name="work", status="active", now=NOW) is None


def test_resuming_is_an_access_so_the_sweep_does_not_suspend_it_again() -> None:
    before = session(status="suspended")
    after = rules.with_status(before, "active", NOW + timedelta(hours=1))
    assert after.last_accessed_at == NOW + timedelta(hours=1)


def test_a_terminated_session_cannot_be_renamed_or_touched() -> None:
    terminated = session(status="terminated")
    for change in (
        lambda: rules.updated(terminated, name="x", status=None, now=NOW),
        lambda: rules.touched(terminated, NOW),
    ):
        with pytest.raises(ServiceError) as error:
            change()
        assert code_of(error) == ErrorCode.SESSION_TERMINATED


def test_a_touch_moves_last_access_forward_only_and_is_not_a_new_version() -> None:
    before = session()
    earlier_clock = rules.touched(before, NOW - timedelta(seconds=5))
    assert earlier_clock.last_accessed_at == NOW + timedelta(microseconds=1)
    assert (earlier_clock.version, earlier_clock.updated_at) == (before.version, before.updated_at)


def test_another_users_or_tenants_session_is_not_found() -> None:
    mine = session()
    assert rules.owned(mine, CALLER) is mine
    for other in (
        Caller(tenant_id=CALLER.tenant_id, user_id=uuid.uuid4(), session_id=uuid.uuid4()),
        Caller(tenant_id=uuid.uuid4(), user_id=CALLER.user_id, session_id=uuid.uuid4()),
    ):
        with pytest.raises(ServiceError) as error:
            rules.owned(mine, other)
        assert code_of(error) == ErrorCode.NOT_FOUND


def test_if_match_must_name_the_current_version() -> None:
    current = session(version=3)
    rules.check_precondition(current, None)
    rules.check_precondition(current, [2, 3])
    for stale in ([2], []):
        with pytest.raises(ServiceError) as error:
            rules.check_precondition(current, stale)
        assert code_of(error) == ErrorCode.PRECONDITION_FAILED


def test_the_quota_counts_active_sessions_up_to_the_maximum() -> None:
    rules.check_quota(19, 20)
    with pytest.raises(ServiceError) as error:
        rules.check_quota(20, 20)
    assert code_of(error) == ErrorCode.SESSION_QUOTA_EXCEEDED


def test_a_fork_name_stays_within_the_limit() -> None:
    assert rules.fork_name("work") == "work (fork)"
    long = rules.fork_name("x" * api.NAME_MAX)
    assert len(long) == api.NAME_MAX and long.endswith(" (fork)")


@pytest.mark.parametrize(
    ("given", "stored"), [("a/b", "a/b"), ("./a//b/", "a/b"), ("projects/my app", "projects/my app")]
)
def test_workspace_paths_are_normalised(given: str, stored: str) -> None:
    assert api.CreateSession(name="x", workspace_path=given).workspace_path == stored


@pytest.mark.parametrize("bad", ["/etc/passwd", "a/../../b", "..", "a\x00b", "a\nb", "", ".", "x" * 4097])
def test_workspace_paths_outside_the_workspace_or_unreadable_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        api.CreateSession(name="x", workspace_path=bad)


@pytest.mark.parametrize("bad", ["", "   ", "x" * (api.NAME_MAX + 1)])
def test_names_are_1_to_200_characters_after_stripping(bad: str) -> None:
    with pytest.raises(ValidationError):
        api.CreateSession(name=bad)
    assert api.CreateSession(name=f"  {'x' * api.NAME_MAX}  ").name == "x" * api.NAME_MAX


def test_an_entry_counts_for_a_snapshot_it_was_current_at() -> None:
    assert rules.current_at(10, None, 10)
    assert not rules.current_at(11, None, 10)  # accessed (or created) after the snapshot: its old place counts
    assert rules.current_at(5, 11, 10)  # moved after the snapshot: still its place for that snapshot
    assert not rules.current_at(5, 10, 10)  # moved at or before it: its newer entry counts


def test_list_cursors_round_trip_and_expire() -> None:
    cursor = rules.encode_list_cursor(1_000_000, (-5, str(uuid.uuid4())))
    snapshot, position = rules.decode_list_cursor(cursor, now_us=2_000_000, ttl=timedelta(seconds=60))
    assert snapshot == 1_000_000 and position[0] == -5
    with pytest.raises(ServiceError) as error:
        rules.decode_list_cursor(cursor, now_us=1_000_000 + 61_000_000, ttl=timedelta(seconds=60))
    assert error.value.details == [{"field": "cursor", "message": "expired"}]
    for forged in ("", "abc", "%%%", rules.encode_list_cursor(1, (-5, "not-a-uuid"))):
        with pytest.raises(ServiceError) as error:
            rules.decode_list_cursor(forged, now_us=2, ttl=timedelta(seconds=60))
        assert code_of(error) == ErrorCode.VALIDATION_FAILED


@pytest.mark.parametrize(
    ("header", "versions"),
    [
        (None, None),
        ("*", None),
        ('"3"', [3]),
        ('"3", "4"', [3, 4]),
        ('W/"3"', []),
        ("3", []),
        ('"abc"', []),
        ('"' + "9" * 40 + '"', []),
    ],
)
def test_if_match_headers_name_strong_versions_only(header: str | None, versions: list[int] | None) -> None:
    assert if_match_versions(header) == versions
