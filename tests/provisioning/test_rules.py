"""The pure parts: coalescing raw watcher events, ignore rules, monitor settings, the workspace state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from contracts.provisioning import workspace_id
from services.monitor.coalesce import Coalescer, RawEvent
from services.monitor.ignore import IgnoreRules
from services.monitor.settings import MonitorSettings, SettingsError
from services.provisioning import states

WALL = datetime(2026, 1, 1, tzinfo=UTC)


def _run(*events: RawEvent) -> list[tuple[str, str, str | None]]:
    coalescer = Coalescer(quiet=0.05, hold_max=1.0)
    for i, event in enumerate(events):
        coalescer.add(event, i * 0.001, WALL)
    assert coalescer.due(0.0) == [] or len(events) == 0
    return [(c.kind, c.path, c.old_path) for c in coalescer.due(10.0)]


def test_a_save_storm_is_one_modified_and_a_temporary_file_nothing() -> None:
    assert _run(*[RawEvent("modified", "a.py")] * 30) == [("modified", "a.py", None)]
    assert _run(RawEvent("created", "t.swp"), RawEvent("modified", "t.swp"), RawEvent("deleted", "t.swp")) == []
    assert _run(RawEvent("created", "n.py"), RawEvent("modified", "n.py")) == [("created", "n.py", None)]
    assert _run(RawEvent("deleted", "r.py"), RawEvent("created", "r.py")) == [("modified", "r.py", None)]


def test_moves_chain_and_a_fresh_file_moved_into_place_is_created() -> None:
    assert _run(RawEvent("moved", "b", src="a"), RawEvent("moved", "c", src="b")) == [("moved", "c", "a")]
    assert _run(RawEvent("created", ".x.tmp"), RawEvent("moved", "x", src=".x.tmp")) == [("created", "x", None)]
    assert _run(RawEvent("moved", "b", src="a"), RawEvent("deleted", "b")) == [("deleted", "a", None)]
    assert _run(RawEvent("moved", "b", src="a"), RawEvent("moved", "a", src="b")) == [("modified", "a", None)]


def test_a_path_written_without_pause_still_reports() -> None:
    coalescer = Coalescer(quiet=0.05, hold_max=1.0)
    t = 0.0
    while t < 1.0:
        coalescer.add(RawEvent("modified", "log.txt"), t, WALL)
        assert coalescer.due(t) == []
        t += 0.01
    coalescer.add(RawEvent("modified", "log.txt"), 1.0, WALL)
    assert [c.kind for c in coalescer.due(1.0)] == ["modified"]


def test_ignore_rules_cover_tool_folders_and_patterns() -> None:
    rules = IgnoreRules(["*.swp", "build/"])
    for path in (".git/HEAD", "a/node_modules/x.js", "target/debug", "dist", "src/__pycache__/m.pyc", "x.swp"):
        assert rules.ignored(path), path
    assert rules.ignored("build/out.o")
    assert not rules.ignored("src/target_list.py") and not rules.ignored("distance.txt")


def test_attempts_back_off_then_fail_and_a_crashed_claim_runs_out() -> None:
    now = WALL
    record = states.new(uuid4(), uuid4(), "local", now)
    first = states.claim(record, now, lease_seconds=30)
    assert first is not None
    claimed, held = first
    assert claimed.status == "provisioning" and states.claim(claimed, now, 30) is None, "one claim at a time"
    assert states.claim(claimed, now + timedelta(seconds=31), 30) is not None, "a dead replica's claim runs out"
    retry = states.attempt_failed(claimed, "boom", now, max_attempts=2, base=1, cap=60)
    assert retry.status == "provisioning" and retry.next_attempt_at == now + timedelta(seconds=1)
    assert not states.due(retry, now) and states.due(retry, now + timedelta(seconds=1))
    second = states.claim(retry, now + timedelta(seconds=1), 30)
    assert second is not None
    failed = states.attempt_failed(second[0], "boom again", now, max_attempts=2, base=1, cap=60)
    assert failed.status == "failed" and failed.error == "boom again" and not states.due(failed, now)
    again = states.reprovision(failed, now)
    assert again is not None and again.status == "requested" and again.attempts == 0 and again.error is None
    assert not states.holds(again, held), "a reprovision supersedes an older claim"
    assert [states.backoff(n, 0.5, 4) for n in (1, 2, 3, 4, 5)] == [0.5, 1, 2, 4, 4]


async def test_processed_markers_are_pruned_once_no_redelivery_can_need_them(tmp_path: object) -> None:
    from pathlib import Path

    from services.provisioning import repository as repo
    from services.provisioning.settings import ProvisioningSettings
    from shared.store import open_store

    assert isinstance(tmp_path, Path)
    store = open_store(ProvisioningSettings(data_dir=tmp_path), "provisioning")
    old, recent = uuid4(), uuid4()
    now = datetime.now(UTC)
    try:
        await store.run(lambda tx: repo.mark_processed(tx, old, now - timedelta(days=30)))
        await store.run(lambda tx: repo.mark_processed(tx, recent, now - timedelta(days=1)))
        assert await store.run(lambda tx: repo.prune_processed(tx, now - timedelta(days=8), 100)) == 1
        assert not await store.run(lambda tx: repo.processed(tx, old))
        assert await store.run(lambda tx: repo.processed(tx, recent))
    finally:
        store.close()


def test_monitor_settings_read_the_environment_as_pydantic_settings_would() -> None:
    tenant, user, other = uuid4(), uuid4(), uuid4()
    settings = MonitorSettings.from_environment(
        {
            "TENANT_ID": str(other),  # the pod's name, after the CODITECT_ one
            "CODITECT_TENANT_ID": str(tenant),
            "user_id": str(user),  # any case
            "coditect_monitor_ignore": '["*.log", "build/"]',  # lists as JSON
            "CODITECT_MONITOR_QUIET_SECONDS": "0.2",
            "CODITECT_NATS_PASSWORD": "secret",
            "CODITECT_UNKNOWN": "ignored",
        }
    )
    assert (settings.tenant_id, settings.user_id, settings.workspace_id) == (tenant, user, None)
    assert settings.monitor_ignore == ["*.log", "build/"] and settings.monitor_quiet_seconds == 0.2
    assert settings.nats_password is not None and settings.nats_password.get_secret_value() == "secret"
    assert settings.workspace() == workspace_id(tenant, user)
    assert "secret" not in repr(settings)
    with pytest.raises(SettingsError, match="CODITECT_USER_ID is required"):
        MonitorSettings.from_environment({"CODITECT_TENANT_ID": str(tenant)})  # no user
    ids = {"TENANT_ID": str(tenant), "USER_ID": str(user)}
    for name, value in [
        ("CODITECT_MONITOR_QUIET_SECONDS", "0"),
        ("CODITECT_MONITOR_MAX_IN_FLIGHT", "0"),
        ("CODITECT_MONITOR_HASH_MAX_BYTES", "-1"),
        ("CODITECT_MONITOR_IGNORE", '"*.log"'),  # not a list
        ("CODITECT_MONITOR_BUFFER_MAX_EVENTS", "many"),
        ("CODITECT_WORKSPACE_ID", "not-a-uuid"),
    ]:
        with pytest.raises(SettingsError, match=name.removeprefix("CODITECT_").lower() + "|" + name):
            MonitorSettings.from_environment({**ids, name: value})
