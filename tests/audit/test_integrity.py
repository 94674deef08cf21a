"""What a store-writer can and cannot hide: verify finds an altered byte, a removed record and a chain
rewritten consistently after a checkpoint; an export verifies offline and a tampered copy does not."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import nats as nats_client
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js.errors import APIError

from contracts import subjects
from services.audit import repository as repo
from services.audit.chain import canonical, seal_record, sign_checkpoint
from services.audit.verify import main as verify_offline
from shared.store import Transaction
from tests.audit.helpers import audit_store, export, lines, publish, synthetic, verify, wait_checkpoint, wait_for
from tests.session.helpers import User, call, new_user
from tests.support import Gateway, NatsServer


async def _trail(system: Gateway, nats: NatsServer, extra: int = 10) -> User:
    """An admin whose tenant's chain holds 2 + ``extra`` records, all checkpointed and published."""
    admin = await new_user(system)
    await publish(nats.url, [synthetic(admin.tenant_id, admin.id, i) for i in range(extra)])
    await wait_for(system, admin, 2 + extra)
    await wait_checkpoint(system, admin.tenant_id, 2 + extra)
    return admin


async def test_an_intact_chain_verifies_with_its_checkpoints(system: Gateway, nats: NatsServer) -> None:
    admin = await _trail(system, nats)
    result = await verify(system, admin)
    assert result["ok"] is True, result
    assert result["checked"] == 12
    assert result["head"]["seq"] == 12
    assert result["first_bad_seq"] is None
    assert result["checkpoints_checked"] >= 2  # stored and published copies
    ranged = await verify(system, admin, from_seq=4, to_seq=9)
    assert ranged["ok"] is True and ranged["checked"] == 6


async def test_published_checkpoints_cannot_be_deleted_or_purged(system: Gateway, nats: NatsServer) -> None:
    admin = await _trail(system, nats, extra=3)
    nc = await nats_client.connect(nats.url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(subjects.AUDIT_CHECKPOINTS_STREAM)
        assert info.config.deny_delete is True and info.config.deny_purge is True
        published = await js.get_last_msg(
            subjects.AUDIT_CHECKPOINTS_STREAM, subjects.audit_checkpoint_subject(admin.tenant_id)
        )
        assert orjson.loads(published.data or b"{}")["seq"] == 5
        with pytest.raises(APIError):
            await js.delete_msg(subjects.AUDIT_CHECKPOINTS_STREAM, published.seq or 0)
        with pytest.raises(APIError):
            await js.purge_stream(subjects.AUDIT_CHECKPOINTS_STREAM)
    finally:
        await nc.close()


async def test_one_changed_byte_is_reported_at_its_seq(system: Gateway, nats: NatsServer) -> None:
    admin = await _trail(system, nats)
    store = audit_store(system)

    def alter(tx: Transaction) -> None:
        raw = repo.record_raw(tx, admin.tenant_id, 7)
        assert raw is not None
        repo.put_record_raw(tx, admin.tenant_id, 7, raw.replace(b"thing:", b"thinG:", 1))

    await store.run(alter)
    result = await verify(system, admin)
    assert result["ok"] is False
    assert result["first_bad_seq"] == 7, result


async def test_a_deleted_record_is_reported_as_the_gap(system: Gateway, nats: NatsServer) -> None:
    admin = await _trail(system, nats)
    await audit_store(system).run(lambda tx: tx.clear(repo.REC.pack((admin.tenant_id, 5))))
    result = await verify(system, admin)
    assert result["ok"] is False
    assert result["first_bad_seq"] == 5, result
    # The last record removed (and the head key moved back) is still caught by the published checkpoints.
    admin2 = await _trail(system, nats)

    def truncate(tx: Transaction) -> None:
        tx.clear(repo.REC.pack((admin2.tenant_id, 12)))
        previous = orjson.loads(repo.record_raw(tx, admin2.tenant_id, 11) or b"{}")
        tx.set(repo.HEAD.pack((admin2.tenant_id,)), orjson.dumps({"seq": 11, "hash": previous["hash"]}))
        for seq in range(1, 13):
            tx.clear(repo.CP.pack((admin2.tenant_id, seq)))

    await audit_store(system).run(truncate)
    result = await verify(system, admin2)
    assert result["ok"] is False
    assert result["first_bad_seq"] == 12, result


def _rewrite(tx: Transaction, tenant: str, from_seq: int) -> None:
    """A store-writer's consistent rewrite: new details from ``from_seq`` on, every hash recomputed."""
    head = repo.head(tx, tenant)
    prev = orjson.loads(repo.record_raw(tx, tenant, from_seq - 1) or b"{}")["hash"]
    for seq in range(from_seq, head.seq + 1):
        record = orjson.loads(repo.record_raw(tx, tenant, seq) or b"{}")
        record.pop("hash")
        record["details"] = {"rewritten": True}
        record["prev_hash"] = prev
        sealed = seal_record(record)
        repo.put_record_raw(tx, tenant, seq, canonical(sealed))
        prev = sealed["hash"]
    tx.set(repo.HEAD.pack((tenant,)), orjson.dumps({"seq": head.seq, "hash": prev}))


async def test_a_consistent_rewrite_after_a_checkpoint_fails_the_checkpoint_check(
    system: Gateway, nats: NatsServer
) -> None:
    admin = await _trail(system, nats)
    checkpoint = await wait_checkpoint(system, admin.tenant_id, 12)
    store = audit_store(system)
    await store.run(lambda tx: _rewrite(tx, admin.tenant_id, 3))
    result = await verify(system, admin)
    assert result["ok"] is False
    assert result["first_bad_seq"] is not None and result["first_bad_seq"] <= checkpoint["seq"], result

    # Re-signing the stored checkpoints with a key of the writer's own does not help: the signature
    # does not verify with the published key, and the stream's copy still names the old hash.
    forger = Ed25519PrivateKey.generate()

    def resign(tx: Transaction) -> None:
        for raw in repo.checkpoints(tx, admin.tenant_id, 0, 0):
            old = orjson.loads(raw)
            record = orjson.loads(repo.record_raw(tx, admin.tenant_id, old["seq"]) or b"{}")
            forged = sign_checkpoint(forger, old["kid"], admin.tenant_id, old["seq"], record["hash"], datetime.now(UTC))
            tx.set(repo.CP.pack((admin.tenant_id, old["seq"])), canonical(forged))

    await store.run(resign)
    result = await verify(system, admin)
    assert result["ok"] is False, result
    assert "signature" in result["reason"], result


async def test_an_export_verifies_offline_and_a_tampered_copy_does_not(
    system: Gateway, nats: NatsServer, tmp_path: Path
) -> None:
    admin = await _trail(system, nats, extra=30)
    data = await export(system, admin)
    exported = lines(data)
    assert [r["seq"] for r in exported] == list(range(1, 33))
    (tmp_path / "trail.ndjson").write_bytes(data)
    (tmp_path / "checkpoints.ndjson").write_bytes(await export(system, admin, "checkpoints"))
    async with system.session.get(f"{system.api}/audit/keys") as response:
        assert response.status == 200
        (tmp_path / "keys.json").write_text(json.dumps(await response.json()))
    args = ["--public-key", str(tmp_path / "keys.json"), "--checkpoints", str(tmp_path / "checkpoints.ndjson")]
    assert verify_offline([str(tmp_path / "trail.ndjson"), *args]) == 0
    command = [sys.executable, "-m", "services.audit.verify", str(tmp_path / "trail.ndjson"), *args]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    assert json.loads(stdout)["head"]["seq"] == 32

    tampered = data.replace(b'"index":17', b'"index":71', 1)
    assert tampered != data
    (tmp_path / "tampered.ndjson").write_bytes(tampered)
    assert verify_offline([str(tmp_path / "tampered.ndjson"), *args]) == 1

    # Dropping the tail is caught by the checkpoints, not by the chain alone.
    (tmp_path / "short.ndjson").write_bytes(b"\n".join(data.splitlines()[:-3]) + b"\n")
    assert verify_offline([str(tmp_path / "short.ndjson"), *args]) == 1


async def test_export_and_verify_are_for_admins(system: Gateway, nats: NatsServer) -> None:
    from tests.session.helpers import member_of

    admin = await new_user(system)
    member = await member_of(system, admin)
    for path in ("/audit/verify", "/audit/export"):
        status, body, _ = await call(system, "GET", path, member)
        assert status == 403 and body["error"]["code"] == "FORBIDDEN"
    status, body, _ = await call(system, "GET", "/audit/verify", admin, from_seq="zero")
    assert status == 422 and body["error"]["code"] == "VALIDATION_FAILED"
    status, body, _ = await call(system, "GET", "/audit/events", admin, cursor="garbage!")
    assert status == 422
