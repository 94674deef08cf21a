"""The monitor writes file events without pydantic (about 12 MB of its resident memory and 0.7 s of its
start-up), so the contract's model cannot drift from what it sends: for every kind and every field, the
monitor's bytes are exactly the contract's own serialization and validate back to the same ``FileChange``;
what the contract refuses, the monitor refuses too."""

from __future__ import annotations

import itertools
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pydantic_core
import pytest
from pydantic import ValidationError

from contracts.file_event import KINDS, FileChange
from services.monitor.encode import FIELDS, InvalidChange, encode_change

REPO = Path(__file__).resolve().parents[2]
TIMES = [
    datetime(2026, 1, 1, tzinfo=UTC),  # no microseconds: written without them
    datetime(2026, 12, 5, 3, 46, 24, 117258, tzinfo=UTC),
    datetime(2026, 12, 5, 3, 46, 24, 500, tzinfo=timezone(timedelta(hours=2))),
    datetime(2026, 12, 5, 3, 46, 24, 1),  # no zone: UTC, as the contract says
]
SHA = "ab" * 32


def _cases() -> list[dict[str, object]]:
    cases: list[dict[str, object]] = []
    for kind, is_dir, (size, sha256), actor, occurred_at in itertools.product(
        KINDS, (False, True), ((None, None), (0, None), (12, SHA)), ("user", "claude-code ✓"), TIMES
    ):
        cases.append(
            {
                "path": "src/naïve dir//b.py" if kind != "deleted" else "./gone",  # normalised by the contract
                "kind": kind,
                "old_path": "old/a.py" if kind == "moved" else None,
                "is_dir": is_dir,
                "size": size,
                "sha256": sha256,
                "actor": actor,
                "occurred_at": occurred_at,
            }
        )
    return cases


def test_the_contract_has_no_field_the_monitor_does_not_write() -> None:
    assert tuple(FileChange.model_fields) == FIELDS


@pytest.mark.parametrize("fields", _cases())
def test_the_monitors_event_is_the_contracts_serialization(fields: dict[str, object]) -> None:
    event_id = uuid.uuid4()
    msg_id, body = encode_change(event_id=event_id, **fields)  # type: ignore[arg-type]
    expected = FileChange(event_id=event_id, **fields)  # type: ignore[arg-type]
    assert msg_id == str(event_id)
    assert body == pydantic_core.to_json(expected)
    assert FileChange.model_validate_json(body) == expected


def test_a_fresh_event_id_each_time() -> None:
    fields = {"path": "a", "kind": "created", "old_path": None, "is_dir": False, "size": None, "sha256": None}
    first = encode_change(actor="user", occurred_at=TIMES[0], **fields)  # type: ignore[arg-type]
    second = encode_change(actor="user", occurred_at=TIMES[0], **fields)  # type: ignore[arg-type]
    assert first[0] != second[0] and orjson.loads(first[1])["event_id"] == first[0]


REFUSED = [
    {"path": "/etc/passwd"},
    {"path": "a/../../b"},
    {"path": "a\x00b"},
    {"path": "x" * 4097},
    {"path": "./"},
    {"path": "a/\udcff.txt"},  # a name that is not UTF-8 (os.fsdecode's surrogate escape)
    {"kind": "moved"},  # without old_path
    {"old_path": "b"},  # old_path on a created event
    {"kind": "moved", "old_path": "../b"},
    {"kind": "touched"},
    {"actor": ""},
    {"actor": "x" * 201},
    {"size": -1},
    {"sha256": "AB" * 32},
    {"sha256": "ab"},
    {"sha256": SHA + "\n"},  # a trailing newline is no digit
]


@pytest.mark.parametrize("change", REFUSED)
def test_what_the_contract_refuses_the_monitor_refuses(change: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "path": "a.txt",
        "kind": "created",
        "old_path": None,
        "is_dir": False,
        "size": None,
        "sha256": None,
        "actor": "user",
        "occurred_at": TIMES[0],
        **change,
    }
    with pytest.raises(ValidationError):
        FileChange(**fields)  # type: ignore[arg-type]
    with pytest.raises(InvalidChange):
        encode_change(**fields)  # type: ignore[arg-type]


def test_the_monitor_process_does_not_import_pydantic() -> None:
    """Its entry point and everything it loads (settings, encoder, publisher, watcher) stay pydantic-free."""
    probe = (
        "import sys, services.monitor.__main__ as entry; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_core')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"
