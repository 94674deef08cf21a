"""Retention prunes old records down to a checkpoint, which anchors what remains: it still verifies,
online and offline."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from services.audit.retention import prune_all
from services.audit.verify import main as verify_offline
from tests.audit.helpers import audit_of, export, lines, publish, records, synthetic, verify, wait_checkpoint, wait_for
from tests.session.helpers import new_user
from tests.support import Gateway, NatsServer


async def test_pruned_records_leave_an_anchor_the_rest_verifies_from(
    system: Gateway, nats: NatsServer, tmp_path: Path
) -> None:
    admin = await new_user(system)
    await publish(nats.url, [synthetic(admin.tenant_id, admin.id, i) for i in range(10)])
    await wait_for(system, admin, 12)
    await wait_checkpoint(system, admin.tenant_id, 12)
    await publish(nats.url, [synthetic(admin.tenant_id, admin.id, i) for i in range(10, 13)])
    found = await wait_for(system, admin, 15)
    cutoff = datetime.fromisoformat(found[12]["recorded_at"])  # seq 13: recorded after the checkpoint at 12

    removed = await prune_all(audit_of(system), cutoff)
    assert removed == 12
    remaining = await records(system, admin)
    assert [r["seq"] for r in remaining] == [13, 14, 15]
    result = await verify(system, admin)
    assert result["ok"] is True, result
    assert result["checked"] == 3 and result["head"]["seq"] == 15

    data = await export(system, admin)
    assert [r["seq"] for r in lines(data)] == [13, 14, 15]
    (tmp_path / "trail.ndjson").write_bytes(data)
    (tmp_path / "checkpoints.ndjson").write_bytes(await export(system, admin, "checkpoints"))
    async with system.session.get(f"{system.api}/audit/keys") as response:
        (tmp_path / "keys.json").write_text(json.dumps(await response.json()))
    trail, keys = str(tmp_path / "trail.ndjson"), str(tmp_path / "keys.json")
    assert verify_offline([trail, "--public-key", keys, "--checkpoints", str(tmp_path / "checkpoints.ndjson")]) == 0
    assert verify_offline([trail, "--public-key", keys]) == 1  # nothing anchors seq 13 without the checkpoints
